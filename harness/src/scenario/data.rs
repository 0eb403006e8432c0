//! DATA of a step: bytes held since the file was loaded, or a slice of a file beside
//! the scenario that is read only when the step runs.
//!
//! A file slice (`{ file = "x.bin", offset = 1024, len = 4096 }`, and a whole
//! `{ file = "x.bin" }` too) is checked at load time (the file exists and holds the
//! slice) but never read then: an imported capture or a large upload stays on disk,
//! and a run reads it in pieces of at most [`FILE_PIECE`] bytes as its steps go, so
//! memory does not grow with the file.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};

/// The most bytes of a file slice a step reads at once.
pub const FILE_PIECE: usize = 1 << 20;

/// The bytes a step sends or compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// Bytes known at load time (strings, `hex`, `base64`, `repeat`).
    Bytes(Bytes),
    /// A slice of a file, read when the step runs.
    File(FileSlice),
    /// `{ template = "..." }`: bytes made when the step runs, from the run's
    /// variables and addresses. The runner resolves it into [`Data::Bytes`] before
    /// the step uses it.
    Template(Arc<crate::programs::placeholders::Template>),
}

/// `len` bytes of the file at `path` from `offset`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileSlice {
    /// Resolved against the scenario file's folder.
    pub path: Arc<Path>,
    /// How the scenario names the file, for messages.
    pub name: Arc<str>,
    pub offset: u64,
    pub len: u64,
}

impl Data {
    /// How many bytes the data holds.
    pub fn len(&self) -> u64 {
        match self {
            Data::Bytes(bytes) => bytes.len() as u64,
            Data::File(slice) => slice.len,
            // Unknown until the step runs.
            Data::Template(_) => 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The bytes, when they were known at load time.
    pub fn as_bytes(&self) -> Option<&Bytes> {
        match self {
            Data::Bytes(bytes) => Some(bytes),
            Data::File(_) | Data::Template(_) => None,
        }
    }

    /// Opens the data for reading from its start.
    pub fn reader(&self) -> io::Result<DataReader> {
        DataReader::new(self)
    }

    /// The first `limit` bytes (all of them if fewer): for a datagram, a single read
    /// or a failure report, where the bytes are bounded anyway.
    pub fn head(&self, limit: usize) -> io::Result<Bytes> {
        match self {
            Data::Bytes(bytes) => Ok(bytes.slice(..bytes.len().min(limit))),
            Data::File(slice) => slice.read(0, usize_of(slice.len).min(limit)),
            Data::Template(_) => Err(unresolved()),
        }
    }
}

impl From<Bytes> for Data {
    fn from(bytes: Bytes) -> Self {
        Data::Bytes(bytes)
    }
}

impl From<&'static [u8]> for Data {
    fn from(bytes: &'static [u8]) -> Self {
        Data::Bytes(Bytes::from_static(bytes))
    }
}

impl FileSlice {
    /// Reads `len` bytes from `start` (relative to the slice). The file must still
    /// hold them: one that shrank since the scenario was loaded is an error that
    /// names it, never short data.
    pub fn read(&self, start: u64, len: usize) -> io::Result<Bytes> {
        let file = File::open(&self.path).map_err(|e| self.error(e))?;
        self.read_from(&file, start, len)
    }

    fn read_from(&self, file: &File, start: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::zeroed(len);
        file.read_exact_at(&mut buf, self.offset + start)
            .map_err(|e| {
                if e.kind() == io::ErrorKind::UnexpectedEof {
                    io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        format!(
                            "`{}` no longer holds bytes {}..{} (it changed since the scenario was loaded)",
                            self.name,
                            self.offset + start,
                            self.offset + start + len as u64
                        ),
                    )
                } else {
                    self.error(e)
                }
            })?;
        Ok(buf.freeze())
    }

    fn error(&self, e: io::Error) -> io::Error {
        io::Error::new(e.kind(), format!("cannot read `{}`: {e}", self.name))
    }
}

/// Reads data from its start in pieces: the whole of in-memory data at once
/// (shared, not copied), a file slice [`FILE_PIECE`] bytes at a time.
pub struct DataReader {
    source: Source,
    /// Bytes handed out so far.
    done: u64,
    len: u64,
}

enum Source {
    Bytes(Bytes),
    File(FileSlice, File),
}

impl DataReader {
    fn new(data: &Data) -> io::Result<Self> {
        let source = match data {
            Data::Bytes(bytes) => Source::Bytes(bytes.clone()),
            Data::File(slice) => {
                let file = File::open(&slice.path).map_err(|e| slice.error(e))?;
                Source::File(slice.clone(), file)
            }
            Data::Template(_) => return Err(unresolved()),
        };
        Ok(Self {
            source,
            done: 0,
            len: data.len(),
        })
    }

    /// Bytes not handed out yet.
    pub fn remaining(&self) -> u64 {
        self.len - self.done
    }

    /// The next at most `max` bytes (at most [`FILE_PIECE`] for a file); empty at
    /// the end.
    pub fn next(&mut self, max: usize) -> io::Result<Bytes> {
        let want = usize_of(self.remaining()).min(max);
        let piece = match &self.source {
            Source::Bytes(bytes) => {
                let start = usize_of(self.done);
                bytes.slice(start..start + want)
            }
            Source::File(slice, file) => slice.read_from(file, self.done, want.min(FILE_PIECE))?,
        };
        self.done += piece.len() as u64;
        Ok(piece)
    }

    /// Exactly the next `len` bytes (fewer only at the end), in one buffer: one
    /// write call or datagram of a `chunks` send.
    pub fn next_exact(&mut self, len: usize) -> io::Result<Bytes> {
        let first = self.next(len)?;
        if first.len() == len || self.remaining() == 0 {
            return Ok(first);
        }
        let mut joined = BytesMut::with_capacity(len.min(usize_of(self.remaining()) + first.len()));
        joined.extend_from_slice(&first);
        while joined.len() < len {
            let piece = self.next(len - joined.len())?;
            if piece.is_empty() {
                break;
            }
            joined.extend_from_slice(&piece);
        }
        Ok(joined.freeze())
    }
}

/// A template reached a step unresolved: a bug of the runner, reported, not a panic.
fn unresolved() -> io::Error {
    io::Error::other("internal error: template data was not resolved before its step")
}

fn usize_of(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slice_of(dir: &Path, content: &[u8], offset: u64, len: u64) -> Data {
        let path = dir.join("d.bin");
        std::fs::write(&path, content).unwrap();
        Data::File(FileSlice {
            path: path.into(),
            name: "d.bin".into(),
            offset,
            len,
        })
    }

    #[test]
    fn a_file_slice_reads_only_its_bytes_in_pieces() {
        let dir = tempfile::tempdir().unwrap();
        let content: Vec<u8> = (0..3 * FILE_PIECE as u32).map(|i| i as u8).collect();
        let data = slice_of(dir.path(), &content, 7, 2 * FILE_PIECE as u64 + 5);
        let mut reader = data.reader().unwrap();
        let mut got = Vec::new();
        loop {
            let piece = reader.next(usize::MAX).unwrap();
            if piece.is_empty() {
                break;
            }
            assert!(piece.len() <= FILE_PIECE);
            got.extend_from_slice(&piece);
        }
        assert_eq!(got, &content[7..7 + 2 * FILE_PIECE + 5]);
        assert_eq!(data.head(3).unwrap().as_ref(), &content[7..10]);
    }

    #[test]
    fn exact_pieces_span_file_reads() {
        let dir = tempfile::tempdir().unwrap();
        let content = vec![9u8; FILE_PIECE + 10];
        let data = slice_of(dir.path(), &content, 0, content.len() as u64);
        let mut reader = data.reader().unwrap();
        assert_eq!(
            reader.next_exact(FILE_PIECE + 4).unwrap().len(),
            FILE_PIECE + 4
        );
        assert_eq!(reader.next_exact(100).unwrap().len(), 6);
        assert!(reader.next_exact(100).unwrap().is_empty());
    }

    #[test]
    fn a_file_that_shrank_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let data = slice_of(dir.path(), b"0123456789", 2, 8);
        std::fs::write(dir.path().join("d.bin"), b"0123").unwrap();
        let error = data.head(100).unwrap_err();
        assert!(
            error.to_string().contains("`d.bin` no longer holds"),
            "{error}"
        );
    }
}
