//! A direct reader for the everyday shape of a scenario file, in front of
//! `toml_parser`.
//!
//! `toml_parser` lexes the whole file into a token list before it parses: 24 bytes
//! per token, about 26 tokens per script step, so a 2,000-step file is a megabyte of
//! tokens written and read once. This reader walks the text once and sends the same
//! events to the same [`Builder`], so every TOML rule the builder applies (and every
//! decoding of keys and strings) is shared. It reads only what scenario files are
//! made of: bare and quoted keys, dotted keys, single-line strings, numbers and
//! booleans, arrays, single-line inline tables, `[table]` and `[[table]]` headers,
//! comments. Anything else (a multi-line string, a date with a space, a newline in
//! an inline table, a byte order mark, anything malformed) and any error the builder
//! reports makes it give up: the caller then parses the file the full way, which is
//! also where every syntax error comes from, so error messages never depend on which
//! reader ran. `fuzz-checks` compares the two readers' trees on arbitrary input.

use toml_parser::decoder::Encoding;
use toml_parser::parser::EventReceiver;
use toml_parser::Span;

use super::{plain_scalar, plain_text, Builder, Entry, FirstError, Node, NodeKind, MAX_NESTING};

/// Keys a plain inline table may have (see `Reader::plain_inline_table`): a step
/// has a handful.
const PLAIN_ENTRIES_MAX: usize = 12;

/// Gave up: the file is not in the shape this reader handles (or is not valid).
pub(super) struct GiveUp;

type Read<T = ()> = Result<T, GiveUp>;

/// Reads the whole document into `builder`, or gives up.
pub(super) fn read_document<'s>(
    source: &'s str,
    builder: &mut Builder<'s>,
    errors: &mut FirstError,
) -> Read {
    let mut reader = Reader {
        source,
        at: 0,
        builder,
        errors,
        spare_entries: Vec::new(),
        plain_refused_until: 0,
    };
    if reader.text().starts_with(b"\xEF\xBB\xBF") {
        return Err(GiveUp);
    }
    loop {
        reader.skip_blanks();
        match reader.peek() {
            None => break,
            Some(b'\n' | b'\r' | b'#') => {}
            Some(b'[') => reader.header()?,
            Some(_) => {
                reader.key()?;
                reader.key_value_separator()?;
                reader.value(0)?;
            }
        }
        reader.end_of_line()?;
        if reader.failed() {
            return Err(GiveUp);
        }
    }
    Ok(())
}

struct Reader<'r, 's> {
    source: &'s str,
    at: usize,
    builder: &'r mut Builder<'s>,
    errors: &'r mut FirstError,
    /// Emptied entry buffers of plain inline tables, one per nesting level in use:
    /// a table's entries are gathered in one, then moved into the tree's arena.
    spare_entries: Vec<Vec<Entry<'s>>>,
    /// Where the last plain inline table that was given up on stopped. Tables that
    /// start before it are in that one (or are it) and are read through the events
    /// at once: trying each again, level by level, would read a deeply nested
    /// table once per level.
    plain_refused_until: usize,
}

fn span(start: usize, end: usize) -> Span {
    Span::new_unchecked(start, end)
}

/// Spaces and tabs (TOML's `ws`).
const BLANK: u8 = 1;
/// Bytes a bare key is made of (TOML's `unquoted-key`).
const BARE_KEY: u8 = 2;
/// Bytes of the unquoted values this reader takes: numbers, booleans, `inf`, `nan`
/// and dates without a space. The builder decides what the text means.
const UNQUOTED_VALUE: u8 = 4;

/// Each byte's classes, so a run of them is one table lookup a byte instead of a
/// chain of comparisons: these runs are most of what the reader does.
static CLASSES: [u8; 256] = {
    let mut classes = [0u8; 256];
    let mut byte = 0;
    while byte < 256 {
        let b = byte as u8;
        let mut class = 0;
        if b == b' ' || b == b'\t' {
            class |= BLANK;
        }
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            class |= BARE_KEY;
        }
        if b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'+' | b'.' | b':') {
            class |= UNQUOTED_VALUE;
        }
        classes[byte] = class;
        byte += 1;
    }
    classes
};

/// Bytes a bare key is made of (TOML's `unquoted-key`).
pub(super) fn is_bare_key_byte(byte: u8) -> bool {
    CLASSES[usize::from(byte)] & BARE_KEY != 0
}

impl<'s> Reader<'_, 's> {
    /// The document's bytes: the scanning is byte by byte, the slices taken
    /// out of it are `&str`.
    fn text(&self) -> &'s [u8] {
        self.source.as_bytes()
    }

    fn peek(&self) -> Option<u8> {
        self.text().get(self.at).copied()
    }

    /// How many bytes from `at` on are `kept`.
    fn run_from(&self, at: usize, kept: impl Fn(u8) -> bool) -> usize {
        let rest = &self.text()[at..];
        rest.iter().position(|&b| !kept(b)).unwrap_or(rest.len())
    }

    /// How many bytes from `at` on are of `class`.
    fn run_of(&self, at: usize, class: u8) -> usize {
        let rest = &self.text()[at..];
        rest.iter()
            .position(|&b| CLASSES[usize::from(b)] & class == 0)
            .unwrap_or(rest.len())
    }

    fn failed(&self) -> bool {
        self.errors.0.is_some() || self.builder.failed
    }

    fn expect(&mut self, byte: u8) -> Read {
        if self.peek() == Some(byte) {
            self.at += 1;
            Ok(())
        } else {
            Err(GiveUp)
        }
    }

    /// Spaces and tabs.
    fn skip_blanks(&mut self) {
        // Most places have no blank or one.
        if self
            .peek()
            .is_some_and(|b| CLASSES[usize::from(b)] & BLANK != 0)
        {
            self.at += 1 + self.run_of(self.at + 1, BLANK);
        }
    }

    /// A comment from `#` to the end of its line (not the line break).
    fn comment(&mut self) {
        let start = self.at;
        self.at += self.run_from(start, |b| b != b'\n' && b != b'\r');
        self.builder.comment(span(start, self.at), self.errors);
    }

    /// One line break (LF or CRLF).
    fn newline(&mut self) -> Read {
        let start = self.at;
        match self.peek() {
            Some(b'\n') => self.at += 1,
            Some(b'\r') if self.text().get(start + 1) == Some(&b'\n') => self.at += 2,
            _ => return Err(GiveUp),
        }
        self.builder.newline(span(start, self.at), self.errors);
        Ok(())
    }

    /// What may follow an expression: blanks, a comment, then a line break or the end.
    fn end_of_line(&mut self) -> Read {
        self.skip_blanks();
        if self.peek() == Some(b'#') {
            self.comment();
        }
        match self.peek() {
            None => Ok(()),
            Some(_) => self.newline(),
        }
    }

    /// Blanks, comments and line breaks, as allowed between an array's values.
    fn skip_array_space(&mut self) -> Read {
        loop {
            self.skip_blanks();
            match self.peek() {
                Some(b'#') => self.comment(),
                Some(b'\n' | b'\r') => self.newline()?,
                _ => return Ok(()),
            }
        }
    }

    /// `[name]` or `[[name]]`, the name possibly dotted.
    fn header(&mut self) -> Read {
        let start = self.at;
        let array = self.text().get(start + 1) == Some(&b'[');
        if array {
            self.at += 2;
            self.builder
                .array_table_open(span(start, self.at), self.errors);
        } else {
            self.at += 1;
            self.builder
                .std_table_open(span(start, self.at), self.errors);
        }
        self.skip_blanks();
        self.key()?;
        let close = self.at;
        self.expect(b']')?;
        if array {
            self.expect(b']')?;
            self.builder
                .array_table_close(span(close, self.at), self.errors);
        } else {
            self.builder
                .std_table_close(span(close, self.at), self.errors);
        }
        Ok(())
    }

    /// A key, dotted or not, and the blanks after it.
    fn key(&mut self) -> Read {
        loop {
            self.simple_key()?;
            self.skip_blanks();
            if self.peek() != Some(b'.') {
                return Ok(());
            }
            self.at += 1;
            self.skip_blanks();
        }
    }

    fn simple_key(&mut self) -> Read {
        let start = self.at;
        let encoding = self.single_line_string()?;
        if encoding.is_none() {
            let length = self.run_of(start, BARE_KEY);
            if length == 0 {
                return Err(GiveUp);
            }
            self.at += length;
        }
        self.builder
            .simple_key(span(start, self.at), encoding, self.errors);
        Ok(())
    }

    /// A quoted single-line string here, with its encoding; `None` (nothing read)
    /// when there is no quote.
    fn single_line_string(&mut self) -> Read<Option<Encoding>> {
        match self.peek() {
            Some(b'"') => self.basic_string().map(|()| Some(Encoding::BasicString)),
            Some(b'\'') => self
                .literal_string()
                .map(|()| Some(Encoding::LiteralString)),
            _ => Ok(None),
        }
    }

    /// `=` and the blanks after it (the blanks before it went with the key).
    fn key_value_separator(&mut self) -> Read {
        self.expect(b'=')?;
        self.skip_blanks();
        Ok(())
    }

    /// A single-line basic string, quotes included; escapes are left to the
    /// builder's decoding, only skipped over here so `\"` does not end the string.
    fn basic_string(&mut self) -> Read {
        if self.text()[self.at..].starts_with(b"\"\"\"") {
            return Err(GiveUp);
        }
        let mut at = self.at + 1;
        loop {
            match self.text().get(at) {
                Some(b'"') => break,
                Some(b'\\') => at += 2,
                Some(b'\n' | b'\r') | None => return Err(GiveUp),
                Some(_) => at += 1,
            }
        }
        self.at = at + 1;
        Ok(())
    }

    /// A single-line literal string, quotes included.
    fn literal_string(&mut self) -> Read {
        if self.text()[self.at..].starts_with(b"'''") {
            return Err(GiveUp);
        }
        let rest = &self.text()[self.at + 1..];
        match rest
            .iter()
            .position(|&b| matches!(b, b'\'' | b'\n' | b'\r'))
        {
            Some(length) if rest[length] == b'\'' => {
                self.at += length + 2;
                Ok(())
            }
            _ => Err(GiveUp),
        }
    }

    /// `"""..."""`: ends at the first `"""` that no backslash escapes, and takes
    /// up to two more quotes as content (`"""say "hi""""`), as TOML says.
    fn multi_line_basic_string(&mut self) -> Read {
        let mut at = self.at + 3;
        loop {
            match self.text().get(at) {
                None => return Err(GiveUp),
                Some(b'\\') => {
                    at += 1;
                    if let Some(b'\\' | b'"') = self.text().get(at) {
                        at += 1;
                    }
                }
                Some(b'"') if self.text()[at..].starts_with(b"\"\"\"") => {
                    at += 3;
                    break;
                }
                Some(_) => at += 1,
            }
        }
        self.at = self.close_with_extra_quotes(at, b'"');
        Ok(())
    }

    /// `'''...'''`: ends at the first `'''`, plus up to two more apostrophes.
    fn multi_line_literal_string(&mut self) -> Read {
        let body = self.at + 3;
        let Some(end) = self.text()[body..].windows(3).position(|w| w == b"'''") else {
            return Err(GiveUp);
        };
        self.at = self.close_with_extra_quotes(body + end + 3, b'\'');
        Ok(())
    }

    /// Where a multi-line string that closed at `at` ends: up to two more `quote`s
    /// belong to its content.
    fn close_with_extra_quotes(&self, mut at: usize, quote: u8) -> usize {
        for _ in 0..2 {
            if self.text().get(at) == Some(&quote) {
                at += 1;
            }
        }
        at
    }

    fn value(&mut self, depth: usize) -> Read {
        if depth >= MAX_NESTING {
            return Err(GiveUp);
        }
        let start = self.at;
        let rest = &self.text()[start..];
        let encoding = match self.peek() {
            Some(b'[') => return self.array(depth),
            Some(b'{') => {
                if let Some(node) = self.plain_inline_table(depth) {
                    if !self.builder.failed {
                        self.builder.deliver(node, self.errors);
                    }
                    return Ok(());
                }
                return self.inline_table(depth);
            }
            Some(b'"') if rest.starts_with(b"\"\"\"") => {
                self.multi_line_basic_string()?;
                Some(Encoding::MlBasicString)
            }
            Some(b'\'') if rest.starts_with(b"'''") => {
                self.multi_line_literal_string()?;
                Some(Encoding::MlLiteralString)
            }
            _ => match self.single_line_string()? {
                Some(encoding) => Some(encoding),
                None => {
                    self.unquoted_value()?;
                    None
                }
            },
        };
        self.builder
            .scalar(span(start, self.at), encoding, self.errors);
        Ok(())
    }

    /// A number, boolean, `inf`, `nan` or a date without a space.
    fn unquoted_value(&mut self) -> Read {
        let length = self.run_of(self.at, UNQUOTED_VALUE);
        if length == 0 {
            return Err(GiveUp);
        }
        self.at += length;
        // `1979-05-27 07:32:00` is one value to TOML: a space followed by more of
        // a value is left to the full parser.
        let after = self.at + self.run_of(self.at, BLANK);
        match self.text().get(after) {
            None | Some(b',' | b']' | b'}' | b'#' | b'\n' | b'\r') => Ok(()),
            Some(_) => Err(GiveUp),
        }
    }

    fn array(&mut self, depth: usize) -> Read {
        let start = self.at;
        self.at += 1;
        if !self.builder.array_open(span(start, self.at), self.errors) {
            return Err(GiveUp);
        }
        loop {
            self.skip_array_space()?;
            if self.peek() == Some(b']') {
                break;
            }
            self.value(depth + 1)?;
            self.skip_array_space()?;
            match self.peek() {
                Some(b',') => self.at += 1,
                Some(b']') => break,
                _ => return Err(GiveUp),
            }
        }
        let close = self.at;
        self.at += 1;
        self.builder.array_close(span(close, self.at), self.errors);
        Ok(())
    }

    /// `{ key = value, ... }` on one line, without a trailing comma.
    fn inline_table(&mut self, depth: usize) -> Read {
        let start = self.at;
        self.at += 1;
        if !self
            .builder
            .inline_table_open(span(start, self.at), self.errors)
        {
            return Err(GiveUp);
        }
        self.skip_blanks();
        if self.peek() != Some(b'}') {
            loop {
                self.key()?;
                self.key_value_separator()?;
                self.value(depth + 1)?;
                self.skip_blanks();
                match self.peek() {
                    Some(b',') => {
                        self.at += 1;
                        self.skip_blanks();
                    }
                    Some(b'}') => break,
                    _ => return Err(GiveUp),
                }
            }
        }
        let close = self.at;
        self.at += 1;
        self.builder
            .inline_table_close(span(close, self.at), self.errors);
        Ok(())
    }

    /// An inline table of the plain kind script steps are made of, built as one
    /// node without the builder's events: keys that are bare or quoted with nothing
    /// to decode, none dotted and none twice, and values that are plain strings,
    /// decimal integers, booleans or such tables again, with no trailing comma.
    ///
    /// Nearly every step of a long script is one, and the events' key paths, table
    /// frames and duplicate rules cost several times the reading itself. `None`,
    /// with the position where it was, for anything else: the caller then reads the
    /// table through the events, which apply and report every rule, so the tree and
    /// every error are the same either way (a unit test and `fuzz-checks` hold the
    /// two to it).
    fn plain_inline_table(&mut self, depth: usize) -> Option<Node<'s>> {
        if depth >= MAX_NESTING || self.at < self.plain_refused_until {
            return None;
        }
        let start = self.at;
        let mut buffer = self.spare_entries.pop().unwrap_or_default();
        let read = self.plain_entries(depth, &mut buffer);
        let node = read.map(|()| Node {
            span: start..self.at,
            kind: NodeKind::Table(self.builder.arena.alloc_slice_fill_iter(buffer.drain(..))),
        });
        buffer.clear();
        self.spare_entries.push(buffer);
        if node.is_none() {
            self.plain_refused_until = self.plain_refused_until.max(self.at);
            self.at = start;
        }
        node
    }

    /// The entries of a plain inline table (see [`Self::plain_inline_table`]), from
    /// its `{` to past its `}`.
    fn plain_entries(&mut self, depth: usize, entries: &mut Vec<Entry<'s>>) -> Option<()> {
        self.at += 1;
        self.skip_blanks();
        if self.peek() == Some(b'}') {
            self.at += 1;
            return Some(());
        }
        loop {
            let key_start = self.at;
            let key = self.plain_key()?;
            let key_span = key_start..self.at;
            self.skip_blanks();
            self.expect(b'=').ok()?;
            self.skip_blanks();
            // A key is looked for among the ones before it; a table of more keys
            // than a step has goes through the events, whose index keeps a large
            // table's duplicate check linear.
            if entries.len() >= PLAIN_ENTRIES_MAX || entries.iter().any(|entry| entry.key == key) {
                return None;
            }
            let value = self.plain_value(depth + 1)?;
            entries.push(Entry {
                key,
                key_span,
                value,
            });
            self.skip_blanks();
            match self.peek() {
                Some(b',') => {
                    self.at += 1;
                    self.skip_blanks();
                    if self.peek() == Some(b'}') {
                        return None;
                    }
                }
                Some(b'}') => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A bare key, or a quoted one whose text needs no decoding.
    fn plain_key(&mut self) -> Option<&'s str> {
        let start = self.at;
        let encoding = self.single_line_string().ok()?;
        if encoding.is_some() {
            return plain_text(&self.source[start..self.at], encoding);
        }
        let length = self.run_of(start, BARE_KEY);
        if length == 0 {
            return None;
        }
        self.at += length;
        Some(&self.source[start..self.at])
    }

    /// A value of a plain inline table: a plain string, a decimal integer, a
    /// boolean, or a plain inline table.
    fn plain_value(&mut self, depth: usize) -> Option<Node<'s>> {
        let start = self.at;
        let kind = match self.peek()? {
            b'{' => return self.plain_inline_table(depth),
            // A multi-line string's `"""` or `'''` is refused here.
            b'"' | b'\'' => {
                let encoding = self.single_line_string().ok()?;
                plain_scalar(&self.source[start..self.at], encoding)?
            }
            _ => {
                self.unquoted_value().ok()?;
                match &self.source[start..self.at] {
                    "true" => NodeKind::Bool(true),
                    "false" => NodeKind::Bool(false),
                    text => plain_scalar(text, None)?,
                }
            }
        };
        Some(Node {
            span: start..self.at,
            kind,
        })
    }
}
