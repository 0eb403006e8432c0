//! What counts as a finding, and when two findings are the same one.
//!
//! A server's stderr is scanned line by line for the reports runtimes print when
//! something went wrong: AddressSanitizer and friends, UBSan's `runtime error:`, a Go
//! `panic:` with its goroutine trace, a Python traceback, a Rust panic. Each becomes
//! a [`Symptom`] whose signature (the error's type and the innermost frame of the
//! program) decides deduplication, so the same bug reached by a thousand inputs is
//! one finding, and two bugs that both crash the process are two.

use std::fmt;

/// The kind of a finding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// The server process exited or was killed by a signal.
    Crash,
    /// A sanitizer report (ASan, MSan, TSan, LSan, UBSan).
    Sanitizer,
    /// A Go panic.
    GoPanic,
    /// A Python traceback.
    PythonTraceback,
    /// A Rust panic (in a program, or in one of wirecheck's own servers).
    RustPanic,
    /// The server stopped answering the seed input.
    Hang,
    /// The server's memory grew beyond the limit.
    MemoryGrowth,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Crash => "crash",
            Kind::Sanitizer => "sanitizer",
            Kind::GoPanic => "go-panic",
            Kind::PythonTraceback => "python-traceback",
            Kind::RustPanic => "rust-panic",
            Kind::Hang => "hang",
            Kind::MemoryGrowth => "memory-growth",
        }
    }
}

/// One observed failure of the target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Symptom {
    pub kind: Kind,
    /// What deduplicates: the error's type and where in the program.
    pub signature: String,
    /// One line for people.
    pub summary: String,
    /// The report's lines, as the program printed them (bounded).
    pub detail: Vec<String>,
}

impl Symptom {
    pub fn new(kind: Kind, signature: impl Into<String>, summary: impl Into<String>) -> Self {
        Self {
            kind,
            signature: signature.into(),
            summary: summary.into(),
            detail: Vec::new(),
        }
    }

    /// The deduplication key.
    pub fn key(&self) -> (Kind, String) {
        (self.kind, self.signature.clone())
    }
}

impl fmt::Display for Symptom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.name(), self.summary)
    }
}

/// Most lines of one report kept in [`Symptom::detail`].
const MAX_DETAIL: usize = 40;

/// A report being read.
#[derive(Debug)]
enum Pending {
    Python {
        lines: Vec<String>,
        frame: String,
    },
    Go {
        lines: Vec<String>,
        message: String,
        in_trace: bool,
    },
    Sanitizer {
        lines: Vec<String>,
        what: String,
    },
}

/// Reads a program's stderr (and stdout) line by line and yields symptoms.
#[derive(Debug, Default)]
pub struct Scanner {
    pending: Option<Pending>,
}

impl Scanner {
    /// Feeds one line; returns a symptom once a report is complete.
    pub fn push(&mut self, line: &str) -> Option<Symptom> {
        let line = line.trim_end_matches(['\r', '\n']);
        if let Some(pending) = self.pending.as_mut() {
            match pending {
                Pending::Python { lines, frame } => {
                    if line.starts_with(' ') || line.starts_with('\t') {
                        if let Some(location) = python_frame(line) {
                            *frame = location;
                        }
                        keep(lines, line);
                        return None;
                    }
                    if line.is_empty()
                        || line.starts_with("During handling")
                        || line.starts_with("The above exception")
                    {
                        keep(lines, line);
                        return None;
                    }
                    keep(lines, line);
                    let exception = line.split(':').next().unwrap_or(line).trim().to_owned();
                    let mut symptom = Symptom::new(
                        Kind::PythonTraceback,
                        format!("{exception} at {frame}"),
                        format!("{} at {frame}", truncate(line, 160)),
                    );
                    symptom.detail = std::mem::take(lines);
                    self.pending = None;
                    return Some(symptom);
                }
                Pending::Go {
                    lines,
                    message,
                    in_trace,
                } => {
                    keep(lines, line);
                    if line.starts_with("goroutine ") {
                        *in_trace = true;
                        return None;
                    }
                    let function = line.split('(').next().unwrap_or(line);
                    if *in_trace
                        && !line.starts_with('\t')
                        && !line.is_empty()
                        && !function.starts_with("panic")
                        && !function.starts_with("runtime.")
                    {
                        let mut symptom = Symptom::new(
                            Kind::GoPanic,
                            format!("{} in {function}", normalize(message)),
                            format!("panic: {} in {function}", truncate(message, 160)),
                        );
                        symptom.detail = std::mem::take(lines);
                        self.pending = None;
                        return Some(symptom);
                    }
                    return None;
                }
                Pending::Sanitizer { lines, what } => {
                    keep(lines, line);
                    let trimmed = line.trim_start();
                    if trimmed.starts_with("#0 ") || trimmed.starts_with("#1 ") {
                        let frame = trimmed
                            .split(" in ")
                            .nth(1)
                            .map(|f| f.split_whitespace().next().unwrap_or(f))
                            .unwrap_or(trimmed);
                        let mut symptom = Symptom::new(
                            Kind::Sanitizer,
                            format!("{what} in {frame}"),
                            format!("{what} in {frame}"),
                        );
                        symptom.detail = std::mem::take(lines);
                        self.pending = None;
                        return Some(symptom);
                    }
                    return None;
                }
            }
        }
        if line.starts_with("Traceback (most recent call last):") {
            self.pending = Some(Pending::Python {
                lines: vec![line.to_owned()],
                frame: "an unknown place".into(),
            });
        } else if let Some(message) = line.strip_prefix("panic: ") {
            self.pending = Some(Pending::Go {
                lines: vec![line.to_owned()],
                message: message.to_owned(),
                in_trace: false,
            });
        } else if let Some(at) = line.find("Sanitizer: ") {
            if line.contains("ERROR: ") || line.contains("WARNING: ") {
                let what = line[..at + "Sanitizer".len()]
                    .rsplit(' ')
                    .next()
                    .unwrap_or("Sanitizer")
                    .to_owned();
                let rest = &line[at + "Sanitizer: ".len()..];
                let error = rest.split_whitespace().next().unwrap_or(rest);
                self.pending = Some(Pending::Sanitizer {
                    lines: vec![line.to_owned()],
                    what: format!("{what}: {error}"),
                });
            }
        } else if let Some(at) = line.find(": runtime error: ") {
            // UBSan: `file.c:12:5: runtime error: signed integer overflow ...`.
            let location = &line[..at];
            let mut symptom = Symptom::new(
                Kind::Sanitizer,
                format!("UndefinedBehaviorSanitizer at {location}"),
                truncate(line, 200),
            );
            symptom.detail.push(line.to_owned());
            return Some(symptom);
        } else if let Some(rest) = line.strip_prefix("thread '") {
            if let Some(at) = rest.find("' panicked at ") {
                let location = rest[at + "' panicked at ".len()..].trim_end_matches(':');
                let mut symptom = Symptom::new(
                    Kind::RustPanic,
                    format!("panic at {location}"),
                    format!("panicked at {location}"),
                );
                symptom.detail.push(line.to_owned());
                return Some(symptom);
            }
        }
        None
    }

    /// The report still being read when the output ended (a program that died
    /// in the middle of printing it).
    pub fn finish(&mut self) -> Option<Symptom> {
        let pending = self.pending.take()?;
        Some(match pending {
            Pending::Python { lines, frame } => {
                let mut symptom = Symptom::new(
                    Kind::PythonTraceback,
                    format!("traceback at {frame}"),
                    format!("a traceback at {frame}"),
                );
                symptom.detail = lines;
                symptom
            }
            Pending::Go { lines, message, .. } => {
                let mut symptom = Symptom::new(
                    Kind::GoPanic,
                    normalize(&message),
                    format!("panic: {}", truncate(&message, 160)),
                );
                symptom.detail = lines;
                symptom
            }
            Pending::Sanitizer { lines, what } => {
                let mut symptom = Symptom::new(Kind::Sanitizer, what.clone(), what);
                symptom.detail = lines;
                symptom
            }
        })
    }
}

fn keep(lines: &mut Vec<String>, line: &str) {
    if lines.len() < MAX_DETAIL {
        lines.push(line.to_owned());
    }
}

/// `File "/x/srv.py", line 31, in handle` -> `srv.py:31 in handle`.
fn python_frame(line: &str) -> Option<String> {
    let rest = line.trim_start().strip_prefix("File \"")?;
    let (path, rest) = rest.split_once('"')?;
    let file = path.rsplit('/').next().unwrap_or(path);
    let rest = rest.trim_start_matches(',').trim();
    let number = rest.strip_prefix("line ")?.split(',').next()?.trim();
    let function = rest.split(", in ").nth(1).unwrap_or("?");
    Some(format!("{file}:{number} in {function}"))
}

/// A line with its numbers blanked, so `index 5 out of range` and `index 7 out of
/// range` are one kind of message.
pub fn normalize(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut in_number = false;
    for c in line.chars() {
        if c.is_ascii_digit() || (in_number && c.is_ascii_hexdigit()) || (in_number && c == 'x') {
            if !in_number {
                out.push('N');
                in_number = true;
            }
        } else {
            in_number = false;
            out.push(c);
        }
    }
    out
}

fn truncate(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Vec<Symptom> {
        let mut scanner = Scanner::default();
        let mut found: Vec<Symptom> = text.lines().filter_map(|l| scanner.push(l)).collect();
        found.extend(scanner.finish());
        found
    }

    #[test]
    fn a_python_traceback_is_its_exception_and_innermost_frame() {
        let found = scan(
            "serving\nTraceback (most recent call last):\n  File \"/a/srv.py\", line 40, in <module>\n    main()\n  File \"/a/srv.py\", line 22, in handle\n    text = payload.decode()\nUnicodeDecodeError: 'utf-8' codec can't decode byte 0xff\n",
        );
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, Kind::PythonTraceback);
        assert_eq!(
            found[0].signature,
            "UnicodeDecodeError at srv.py:22 in handle"
        );
        assert_eq!(found[0].detail.len(), 6);
    }

    #[test]
    fn a_chained_python_traceback_ends_at_the_last_exception() {
        let found = scan("Traceback (most recent call last):\n  File \"s.py\", line 1, in f\nKeyError: 1\n\nDuring handling of the above exception, another exception occurred:\n");
        assert_eq!(found[0].signature, "KeyError at s.py:1 in f");
    }

    #[test]
    fn a_go_panic_is_its_message_and_first_program_frame() {
        let found = scan("panic: runtime error: index out of range [5] with length 3\n\ngoroutine 7 [running]:\nmain.handle(0xc000)\n\t/src/main.go:12 +0x1d\n");
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].kind, Kind::GoPanic);
        assert_eq!(
            found[0].signature,
            "runtime error: index out of range [N] with length N in main.handle"
        );
    }

    #[test]
    fn sanitizer_reports_are_their_error_and_top_frame() {
        let found = scan("=================================================================\n==123==ERROR: AddressSanitizer: heap-buffer-overflow on address 0x6020 at pc 0x55\nREAD of size 1 at 0x6020 thread T0\n    #0 0x55d in parse_frame /src/srv.c:31:9\n    #1 0x55e in main /src/srv.c:80\n");
        assert_eq!(found.len(), 1);
        assert_eq!(
            found[0].signature,
            "AddressSanitizer: heap-buffer-overflow in parse_frame"
        );
        let ub = scan("srv.c:12:5: runtime error: signed integer overflow: 2147483647 + 1\n");
        assert_eq!(ub[0].signature, "UndefinedBehaviorSanitizer at srv.c:12:5");
    }

    #[test]
    fn a_rust_panic_is_its_location() {
        let found = scan(
            "thread 'main' panicked at src/main.rs:10:5:\nattempt to subtract with overflow\n",
        );
        assert_eq!(found[0].kind, Kind::RustPanic);
        assert_eq!(found[0].signature, "panic at src/main.rs:10:5");
    }

    #[test]
    fn ordinary_output_is_no_symptom() {
        assert!(
            scan("listening on 4000\nclient connected\nerror: bad frame, closing\n").is_empty()
        );
    }

    #[test]
    fn numbers_are_blanked() {
        assert_eq!(normalize("bad length -5 at 0x1f"), "bad length -N at N");
    }
}
