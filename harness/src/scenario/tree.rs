//! A small spanned TOML tree, built straight from `toml_parser`'s events.
//!
//! The loader validates a scenario with plain pattern matching over one enum, and
//! every error can still point at the exact key or value.
//!
//! Why not a ready-made document type: for a 2,000-step file the parse was most of a
//! whole `wirecheck run` (BENCHMARKS.md, "The core, as a user runs it").
//! `toml_edit`'s document keeps every key's formatting; the `toml` crate's `DeTable`
//! is lighter but still records every parser event in a vector and gives every
//! inline table a hash map. Both were then converted into this tree. Building the
//! tree from the events directly does the same work once, in about half the time
//! and a third of the memory. The TOML rules that the parser leaves to its user
//! (which keys and tables may be defined twice, what a dotted key may extend) are
//! in [`Builder`]; `fuzz-checks` compares the result with the `toml` crate's on
//! arbitrary input.

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use toml_parser::decoder::{Encoding, ScalarKind};
use toml_parser::parser::EventReceiver;
use toml_parser::{ErrorSink, ParseError, Raw, Source, Span};

/// A TOML value with the byte range it came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Node<'s> {
    pub span: Range<usize>,
    pub kind: NodeKind<'s>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum NodeKind<'s> {
    /// The file's own text, or the decoded text in the tree's arena when decoding
    /// changed it (an escape).
    Str(&'s str),
    Int(i64),
    /// The value, for `json` matchers (NaN when the text could not be read).
    Float(f64),
    Bool(bool),
    Datetime,
    Array(&'s [Node<'s>]),
    Table(&'s [Entry<'s>]),
}

/// One `key = value` of a table, with the key's own span.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry<'s> {
    /// Like [`NodeKind::Str`]: the file's text, or decoded into the arena.
    pub key: &'s str,
    pub key_span: Range<usize>,
    pub value: Node<'s>,
}

impl NodeKind<'_> {
    /// The TOML type name, as a user would say it in an error.
    pub fn type_name(&self) -> &'static str {
        match self {
            NodeKind::Str(_) => "a string",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a float",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Datetime => "a date-time",
            NodeKind::Array(_) => "an array",
            NodeKind::Table(_) => "a table",
        }
    }
}

/// A TOML syntax error: where, and a one-line message.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    pub span: Range<usize>,
    pub message: String,
}

/// Arrays and inline tables nested deeper than this are refused: the tree is walked
/// (and dropped) recursively, and no scenario needs more than a handful of levels.
pub const MAX_NESTING: usize = 100;

mod scan;

/// Where a tree's tables, arrays and decoded strings live: the tree is built into
/// one arena and freed with it.
///
/// A script of thousands of steps is thousands of small tables. Allocated one by
/// one, they cost a `malloc` each and, when the tree was dropped, a walk over every
/// node and a `free` each: for a 2,000-step file, 2.7 million instructions of
/// dropping alone, more than the loader spent reading the steps into the model.
/// The arena allocates by bumping a pointer, packs the nodes without allocator
/// headers, and is given back in a few chunks.
pub type Arena = bumpalo::Bump;

/// An arena sized for `source`'s tree, so that it is one allocation: a script's
/// tree takes about six bytes of arena per byte of text, and pages the tree does
/// not reach are never touched. Should the reservation be refused (a huge file),
/// the arena grows as it fills instead.
pub fn arena_for(source: &str) -> Arena {
    Arena::try_with_capacity(source.len().saturating_mul(6)).unwrap_or_default()
}

/// Parses a whole document into its root table, allocated in `arena`.
pub fn parse<'s>(source: &'s str, arena: &'s Arena) -> Result<Node<'s>, SyntaxError> {
    match parse_direct(source, arena) {
        Some(root) => Ok(root),
        None => parse_with_token_list(source, arena),
    }
}

/// The tree of a document in the everyday shape of a scenario file (see `scan`),
/// read without a token list; `None` for anything else, including every invalid
/// document. Public so the fuzz checks can compare it with
/// [`parse_with_token_list`].
#[doc(hidden)]
pub fn parse_direct<'s>(source: &'s str, arena: &'s Arena) -> Option<Node<'s>> {
    let mut builder = Builder::new(Source::new(source), arena);
    let mut first_error = FirstError::default();
    scan::read_document(source, &mut builder, &mut first_error).ok()?;
    Some(builder.finish())
}

/// Parses any document the full way: `toml_parser` lexes it into a token list,
/// then parses the tokens. Every syntax error comes from here.
#[doc(hidden)]
pub fn parse_with_token_list<'s>(
    source: &'s str,
    arena: &'s Arena,
) -> Result<Node<'s>, SyntaxError> {
    let parsed = Source::new(source);
    // Every token but the last covers at least one byte, so this capacity is never
    // outgrown: the vector is not copied as it fills (toml_parser's own estimate is
    // for Cargo manifests, and a script of inline tables has nearly twice as many
    // tokens per byte), and the pages the tokens do not reach are never touched.
    // The reservation is address space only; should a huge file's be refused, the
    // vector grows as it fills instead (an allocation failure would abort).
    let mut tokens = Vec::new();
    let _ = tokens.try_reserve_exact(source.len() + 1);
    tokens.extend(parsed.lex());
    let mut builder = Builder::new(parsed, arena);
    let mut first_error = FirstError::default();
    toml_parser::parser::parse_document(&tokens, &mut builder, &mut first_error);
    drop(tokens);
    match first_error.0 {
        Some(error) => Err(error),
        None => Ok(builder.finish()),
    }
}

/// Keeps the first error reported, by the parser or by the builder; TOML errors
/// after the first are usually its echoes.
#[derive(Default)]
struct FirstError(Option<SyntaxError>);

impl ErrorSink for FirstError {
    fn report_error(&mut self, error: ParseError) {
        if self.0.is_some() {
            return;
        }
        let span = error
            .unexpected()
            .or(error.context())
            .map_or(0..0, |s| s.start()..s.end());
        let mut message = error.description().to_owned();
        if let Some(expected) = error.expected().filter(|e| !e.is_empty()) {
            let names: Vec<String> = expected
                .iter()
                .map(|e| match e {
                    toml_parser::Expected::Literal(text) => {
                        format!("`{}`", text.escape_debug())
                    }
                    toml_parser::Expected::Description(text) => (*text).to_owned(),
                    _ => "something else".to_owned(),
                })
                .collect();
            message.push_str(", expected ");
            message.push_str(&names.join(" or "));
        }
        self.0 = Some(SyntaxError { span, message });
    }
}

/// A table while the document is being read: it may still gain entries, so it
/// remembers how it came to exist (TOML lets some tables be extended later and
/// forbids it for others).
#[derive(Debug, Default)]
struct Table<'s> {
    span: Range<usize>,
    entries: Vec<TableEntry<'s>>,
    /// Key -> position in `entries`, built once a table grows past a few entries so
    /// that a table of many keys is not searched linearly for every new key.
    /// Boxed: almost every table is a step's one or two keys and never gets an
    /// index, and the box keeps those tables 40 bytes smaller.
    #[allow(clippy::box_collection)]
    index: Option<Box<HashMap<&'s str, usize>>>,
    /// Created only as the parent of a header or a dotted key, not defined itself.
    implicit: bool,
    /// Created or extended by a dotted key.
    dotted: bool,
}

#[derive(Debug)]
struct TableEntry<'s> {
    key: &'s str,
    key_span: Range<usize>,
    value: Value<'s>,
}

/// A value in a table still being built.
#[derive(Debug)]
enum Value<'s> {
    /// Finished and closed to extension: scalars, arrays of values, inline tables.
    Done(Node<'s>),
    Table(Box<Table<'s>>),
    /// `[[name]]`: tables appended by headers.
    ArrayOfTables {
        span: Range<usize>,
        tables: Vec<Table<'s>>,
    },
}

/// Entries a table holds before it gets a key index.
const INDEX_FROM: usize = 12;

impl<'s> Table<'s> {
    fn new(span: Range<usize>, implicit: bool, dotted: bool) -> Table<'s> {
        Table {
            span,
            implicit,
            dotted,
            ..Table::default()
        }
    }

    fn position(&self, key: &str) -> Option<usize> {
        match &self.index {
            Some(index) => index.get(key).copied(),
            None => self.entries.iter().position(|e| e.key == key),
        }
    }

    fn push(&mut self, key: &'s str, key_span: Range<usize>, value: Value<'s>) -> usize {
        let position = self.entries.len();
        if let Some(index) = &mut self.index {
            index.insert(key, position);
        } else if position >= INDEX_FROM {
            let mut index: HashMap<&'s str, usize> = self
                .entries
                .iter()
                .enumerate()
                .map(|(i, e)| (e.key, i))
                .collect();
            index.insert(key, position);
            self.index = Some(Box::new(index));
        }
        self.entries.push(TableEntry {
            key,
            key_span,
            value,
        });
        position
    }

    /// The node of a finished table, its entries moved into the arena; the
    /// emptied buffer goes back to `spare` for the next inline table.
    fn into_node(mut self, arena: &'s Arena, spare: &mut Vec<Vec<TableEntry<'s>>>) -> Node<'s> {
        let entries = arena.alloc_slice_fill_iter(self.entries.drain(..).map(|e| Entry {
            key: e.key,
            key_span: e.key_span,
            value: e.value.into_node(arena, spare),
        }));
        spare.push(self.entries);
        Node {
            span: self.span,
            kind: NodeKind::Table(entries),
        }
    }
}

impl<'s> Value<'s> {
    fn into_node(self, arena: &'s Arena, spare: &mut Vec<Vec<TableEntry<'s>>>) -> Node<'s> {
        match self {
            Value::Done(node) => node,
            Value::Table(table) => (*table).into_node(arena, spare),
            Value::ArrayOfTables { span, tables } => {
                let tables = arena.alloc_slice_fill_iter(
                    tables
                        .into_iter()
                        .map(|table| table.into_node(arena, spare)),
                );
                Node {
                    span,
                    kind: NodeKind::Array(tables),
                }
            }
        }
    }

    fn type_name(&self) -> &'static str {
        match self {
            Value::Done(Node {
                kind: NodeKind::Table(_),
                ..
            }) => "an inline table",
            Value::Done(node) => node.kind.type_name(),
            Value::Table(_) => "a table",
            Value::ArrayOfTables { .. } => "an array of tables",
        }
    }
}

type KeyPath<'s> = Vec<(&'s str, Range<usize>)>;

/// An array or inline table being read.
enum Frame<'s> {
    Array {
        start: usize,
        items: Vec<Node<'s>>,
    },
    InlineTable {
        start: usize,
        table: Table<'s>,
        key: KeyPath<'s>,
    },
}

/// A `[table]` or `[[table]]` header being read.
struct Header<'s> {
    array: bool,
    start: usize,
    key: KeyPath<'s>,
}

/// Receives the parser's events and applies TOML's rules for tables and keys.
struct Builder<'s> {
    source: Source<'s>,
    arena: &'s Arena,
    root: Table<'s>,
    /// Where the current header's table is, as positions from the root (an array of
    /// tables stands for its last table).
    current: Vec<usize>,
    header: Option<Header<'s>>,
    /// The key of the `key = value` being read at document level.
    key: KeyPath<'s>,
    frames: Vec<Frame<'s>>,
    /// Set at the first error the builder itself found; everything after is ignored.
    failed: bool,
    /// Emptied key paths of closed inline tables, for the next ones: a script is
    /// thousands of inline tables, each needing a key path only while it is read.
    spare_key_paths: Vec<KeyPath<'s>>,
    /// Emptied entry buffers of closed inline tables, for the next ones: an inline
    /// table fills one of these and is then moved into the arena.
    spare_entries: Vec<Vec<TableEntry<'s>>>,
    /// Emptied item buffers of closed arrays, likewise.
    spare_items: Vec<Vec<Node<'s>>>,
}

fn range(span: Span) -> Range<usize> {
    span.start()..span.end()
}

impl<'s> Builder<'s> {
    fn new(source: Source<'s>, arena: &'s Arena) -> Builder<'s> {
        Builder {
            source,
            arena,
            root: Table::new(0..0, false, false),
            current: Vec::new(),
            header: None,
            key: Vec::new(),
            frames: Vec::new(),
            failed: false,
            spare_key_paths: Vec::new(),
            spare_entries: Vec::new(),
            spare_items: Vec::new(),
        }
    }

    fn finish(mut self) -> Node<'s> {
        self.root.into_node(self.arena, &mut self.spare_entries)
    }

    /// Text for the tree: borrowed from the file, or copied into the arena when
    /// decoding made it new.
    fn keep(&self, text: Cow<'s, str>) -> &'s str {
        match text {
            Cow::Borrowed(text) => text,
            Cow::Owned(text) => self.arena.alloc_str(&text),
        }
    }

    fn fail(&mut self, error: &mut dyn ErrorSink, span: Range<usize>, message: String) {
        self.failed = true;
        error.report_error(
            ParseError::new(message).with_unexpected(Span::new_unchecked(span.start, span.end)),
        );
    }

    /// The source text of `span`, quotes included.
    fn text(&self, span: Span) -> &'s str {
        self.source
            .input()
            .get(span.start()..span.end())
            .unwrap_or("")
    }

    fn raw(&self, span: Span, encoding: Option<Encoding>) -> Raw<'s> {
        Raw::new_unchecked(self.text(span), encoding, span)
    }

    /// Delivers a finished value to whatever is waiting for it: the array or inline
    /// table being read, or the document's current table.
    fn deliver(&mut self, node: Node<'s>, error: &mut dyn ErrorSink) {
        match self.frames.last_mut() {
            Some(Frame::Array { items, .. }) => items.push(node),
            Some(Frame::InlineTable { table, key, .. }) => {
                if let Err((span, message)) = insert(table, key, node) {
                    self.fail(error, span, message);
                }
            }
            None => {
                let Some(table) = table_at(&mut self.root, &self.current) else {
                    return;
                };
                if let Err((span, message)) = insert(table, &mut self.key, node) {
                    self.fail(error, span, message);
                }
            }
        }
    }

    /// Enters an array or inline table, unless that would nest too deep.
    fn open(&mut self, frame: Frame<'s>, span: Span, error: &mut dyn ErrorSink) -> bool {
        if self.frames.len() >= MAX_NESTING {
            self.fail(
                error,
                range(span),
                format!("arrays and inline tables nested more than {MAX_NESTING} deep"),
            );
            return false;
        }
        self.frames.push(frame);
        true
    }

    /// Leaves the innermost array or inline table and delivers it as a value.
    fn close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        let node = match self.frames.pop() {
            Some(Frame::Array { start, mut items }) => {
                let node = Node {
                    span: start..span.end(),
                    kind: NodeKind::Array(self.arena.alloc_slice_fill_iter(items.drain(..))),
                };
                self.spare_items.push(items);
                node
            }
            Some(Frame::InlineTable {
                start,
                mut table,
                mut key,
            }) => {
                key.clear();
                self.spare_key_paths.push(key);
                table.span = start..span.end();
                table.into_node(self.arena, &mut self.spare_entries)
            }
            None => return,
        };
        if !self.failed {
            self.deliver(node, error);
        }
    }

    /// Opens the table a `[header]` or `[[header]]` names; `end`: where its closing
    /// bracket ends.
    fn open_header(&mut self, header: Header<'s>, end: usize, error: &mut dyn ErrorSink) {
        let Some(((name, name_span), parents)) = header.key.split_last() else {
            return;
        };
        let span = header.start..end;
        let mut path = Vec::with_capacity(header.key.len());
        let mut table = &mut self.root;
        for (key, key_span) in parents {
            match descend(table, key, key_span, false) {
                Ok((position, child)) => {
                    path.push(position);
                    table = child;
                }
                Err((span, message)) => return self.fail(error, span, message),
            }
        }
        let result = match table.position(name) {
            None if header.array => {
                let tables = vec![Table::new(span.clone(), false, false)];
                let value = Value::ArrayOfTables { span, tables };
                Ok(table.push(name, name_span.clone(), value))
            }
            None => {
                let value = Value::Table(Box::new(Table::new(span, false, false)));
                Ok(table.push(name, name_span.clone(), value))
            }
            Some(position) => match (&mut table.entries[position].value, header.array) {
                (Value::Table(existing), false) if existing.implicit && !existing.dotted => {
                    existing.implicit = false;
                    existing.span = span;
                    Ok(position)
                }
                (Value::ArrayOfTables { tables, .. }, true) => {
                    tables.push(Table::new(span, false, false));
                    Ok(position)
                }
                (Value::Table(_), false) => Err((
                    name_span.clone(),
                    format!("table `{name}` is defined more than once"),
                )),
                (Value::Table(_), true) => Err((
                    name_span.clone(),
                    format!("`{name}` is already a table, so `[[{name}]]` cannot make it an array of tables"),
                )),
                (existing, _) => Err((
                    name_span.clone(),
                    format!(
                        "duplicate key `{name}`: it already holds {}",
                        existing.type_name()
                    ),
                )),
            },
        };
        match result {
            Ok(position) => {
                path.push(position);
                self.current = path;
            }
            Err((span, message)) => self.fail(error, span, message),
        }
    }
}

/// The content of a one-line quoted string whose text needs no decoding: no
/// escape, no control character. `None` for anything else.
///
/// Nearly every key and string of a scenario file is plain, and taking it as it
/// stands skips `toml_parser`'s decoder, the larger part of reading a script step.
/// Everything else, every error included, is still decoded by `toml_parser`.
fn plain_text(text: &str, encoding: Option<Encoding>) -> Option<&str> {
    let (content, quote) = match encoding {
        Some(Encoding::BasicString) => (text.strip_prefix('"')?.strip_suffix('"')?, b'"'),
        Some(Encoding::LiteralString) => (text.strip_prefix('\'')?.strip_suffix('\'')?, b'\''),
        _ => return None,
    };
    // Printable ASCII and tab, which every version of TOML takes as they stand;
    // anything else (non-ASCII, a backslash, the string's own quote) is left to
    // the decoder and its rules.
    let plain = content
        .bytes()
        .all(|b| ((b' '..=b'~').contains(&b) && b != b'\\' && b != quote) || b == b'\t');
    plain.then_some(content)
}

/// A bare key as TOML allows it: ASCII letters, digits, `_` and `-`.
fn is_bare_key(text: &str) -> bool {
    !text.is_empty() && text.bytes().all(scan::is_bare_key_byte)
}

/// A scalar read without `toml_parser`'s decoder: a plain string (see
/// [`plain_text`]) or a decimal integer of at most 18 digits with no sign, no `_`
/// and no leading zero, which is what scripts are made of. `None`: decode it.
fn plain_scalar(text: &str, encoding: Option<Encoding>) -> Option<NodeKind<'_>> {
    match encoding {
        Some(_) => plain_text(text, encoding).map(NodeKind::Str),
        None => {
            let bytes = text.as_bytes();
            let decimal = matches!(bytes, [b'0'] | [b'1'..=b'9', ..])
                && bytes.len() <= 18
                && bytes.iter().all(u8::is_ascii_digit);
            decimal.then(|| NodeKind::Int(text.parse().unwrap_or_default()))
        }
    }
}

/// The table at `path` from the root, or `None` if the path no longer leads to one
/// (it always does: only the builder makes paths).
fn table_at<'t, 's>(root: &'t mut Table<'s>, path: &[usize]) -> Option<&'t mut Table<'s>> {
    let mut table = root;
    for &position in path {
        table = match &mut table.entries.get_mut(position)?.value {
            Value::Table(child) => child,
            Value::ArrayOfTables { tables, .. } => tables.last_mut()?,
            Value::Done(_) => return None,
        };
    }
    Some(table)
}

/// Steps from `table` into its child `key`, creating an implicit table when there is
/// none. `dotted`: the step is part of a dotted key (`a.b = 1`) rather than a header,
/// and TOML forbids dotted keys from reaching into a table a header defined.
fn descend<'t, 's>(
    table: &'t mut Table<'s>,
    key: &'s str,
    key_span: &Range<usize>,
    dotted: bool,
) -> Result<(usize, &'t mut Table<'s>), (Range<usize>, String)> {
    let position = match table.position(key) {
        Some(position) => position,
        None => table.push(
            key,
            key_span.clone(),
            Value::Table(Box::new(Table::new(key_span.clone(), true, dotted))),
        ),
    };
    let child = match &mut table.entries[position].value {
        Value::Table(child) => {
            if dotted && child.implicit {
                child.dotted = true;
            }
            if dotted && !child.implicit {
                return Err((
                    key_span.clone(),
                    format!("duplicate key `{key}`: a dotted key cannot add to a table defined by a [header]"),
                ));
            }
            child
        }
        Value::ArrayOfTables { tables, .. } => match tables.last_mut() {
            Some(last) => last,
            None => return Err((key_span.clone(), format!("`{key}` is an empty array"))),
        },
        existing => {
            return Err((
                key_span.clone(),
                format!(
                    "cannot extend `{key}`: it is {}, not a table",
                    existing.type_name()
                ),
            ))
        }
    };
    Ok((position, child))
}

/// Inserts `key = node` (key possibly dotted) into `table`. The key path is
/// emptied but keeps its buffer, and the last part's string moves into the table:
/// a script's steps are thousands of small inline tables, and an allocation per key
/// saved is a large part of a long file's load time.
fn insert<'s>(
    table: &mut Table<'s>,
    key: &mut KeyPath<'s>,
    node: Node<'s>,
) -> Result<(), (Range<usize>, String)> {
    let Some((name, name_span)) = key.pop() else {
        return Ok(());
    };
    let dotted = !key.is_empty();
    let mut target = table;
    for (part, part_span) in key.drain(..) {
        target = descend(target, part, &part_span, true)?.1;
    }
    if dotted && !target.implicit {
        return Err((
            name_span,
            format!(
                "duplicate key `{name}`: a dotted key cannot add to a table defined by a [header]"
            ),
        ));
    }
    if target.position(name).is_some() {
        return Err((
            name_span,
            format!("duplicate key `{name}`: it is already defined in this table"),
        ));
    }
    target.push(name, name_span, Value::Done(node));
    Ok(())
}

impl<'s> EventReceiver for Builder<'s> {
    fn std_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        self.header = Some(Header {
            array: false,
            start: span.start(),
            key: Vec::new(),
        });
    }

    fn std_table_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        if let Some(header) = self.header.take() {
            if !self.failed {
                self.open_header(header, span.end(), error);
            }
        }
    }

    fn array_table_open(&mut self, span: Span, _error: &mut dyn ErrorSink) {
        self.header = Some(Header {
            array: true,
            start: span.start(),
            key: Vec::new(),
        });
    }

    fn array_table_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.std_table_close(span, error);
    }

    fn inline_table_open(&mut self, span: Span, error: &mut dyn ErrorSink) -> bool {
        let key = self.spare_key_paths.pop().unwrap_or_default();
        let table = Table {
            entries: self.spare_entries.pop().unwrap_or_default(),
            ..Table::new(range(span), false, false)
        };
        self.open(
            Frame::InlineTable {
                start: span.start(),
                table,
                key,
            },
            span,
            error,
        )
    }

    fn inline_table_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.close(span, error);
    }

    fn array_open(&mut self, span: Span, error: &mut dyn ErrorSink) -> bool {
        let frame = Frame::Array {
            start: span.start(),
            items: self.spare_items.pop().unwrap_or_default(),
        };
        self.open(frame, span, error)
    }

    fn array_close(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.close(span, error);
    }

    fn simple_key(&mut self, span: Span, encoding: Option<Encoding>, error: &mut dyn ErrorSink) {
        if self.failed {
            return;
        }
        let text = self.text(span);
        let plain = match encoding {
            None => is_bare_key(text).then_some(text),
            Some(_) => plain_text(text, encoding),
        };
        let key = match plain {
            Some(text) => text,
            None => {
                let mut decoded = Cow::Borrowed("");
                self.raw(span, encoding).decode_key(&mut decoded, error);
                self.keep(decoded)
            }
        };
        let part = (key, range(span));
        if let Some(header) = &mut self.header {
            header.key.push(part);
        } else if let Some(Frame::InlineTable { key, .. }) = self.frames.last_mut() {
            key.push(part);
        } else {
            self.key.push(part);
        }
    }

    fn scalar(&mut self, span: Span, encoding: Option<Encoding>, error: &mut dyn ErrorSink) {
        if self.failed {
            return;
        }
        let text = self.text(span);
        if let Some(kind) = plain_scalar(text, encoding) {
            let node = Node {
                span: range(span),
                kind,
            };
            return self.deliver(node, error);
        }
        let mut decoded = Cow::Borrowed("");
        let kind = match self.raw(span, encoding).decode_scalar(&mut decoded, error) {
            ScalarKind::String => NodeKind::Str(self.keep(decoded)),
            ScalarKind::Boolean(value) => NodeKind::Bool(value),
            // TOML allows `_` between digits; Rust's parser does not.
            ScalarKind::Float => {
                NodeKind::Float(decoded.replace('_', "").parse().unwrap_or(f64::NAN))
            }
            ScalarKind::DateTime => match decoded.parse::<toml_datetime::Datetime>() {
                Ok(_) => NodeKind::Datetime,
                Err(e) => return self.fail(error, range(span), e.to_string()),
            },
            ScalarKind::Integer(radix) => match i64::from_str_radix(&decoded, radix.value()) {
                Ok(value) => NodeKind::Int(value),
                Err(_) => {
                    return self.fail(
                        error,
                        range(span),
                        "integer out of range (TOML integers are 64-bit signed)".to_owned(),
                    )
                }
            },
        };
        let node = Node {
            span: range(span),
            kind,
        };
        self.deliver(node, error);
    }

    fn comment(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.raw(span, None).decode_comment(error);
    }

    fn newline(&mut self, span: Span, error: &mut dyn ErrorSink) {
        self.raw(span, None).decode_newline(error);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The tree functions, each with an arena of its own that a test leaves to the
    // end of the process.
    fn leaked_arena() -> &'static Arena {
        Box::leak(Box::default())
    }

    fn parse(source: &str) -> Result<Node<'_>, SyntaxError> {
        super::parse(source, leaked_arena())
    }

    fn parse_direct(source: &str) -> Option<Node<'_>> {
        super::parse_direct(source, leaked_arena())
    }

    fn parse_with_token_list(source: &str) -> Result<Node<'_>, SyntaxError> {
        super::parse_with_token_list(source, leaked_arena())
    }

    fn table<'a>(node: &'a Node<'a>) -> &'a [Entry<'a>] {
        match &node.kind {
            NodeKind::Table(entries) => entries,
            other => panic!("not a table: {other:?}"),
        }
    }

    fn get<'n>(node: &'n Node, key: &str) -> &'n Node<'n> {
        &table(node)
            .iter()
            .find(|e| e.key == key)
            .unwrap_or_else(|| panic!("no key {key}"))
            .value
    }

    fn error(source: &str) -> SyntaxError {
        parse(source).expect_err("should be refused")
    }

    #[test]
    fn headers_dotted_keys_and_arrays_of_tables_build_one_tree_in_source_order() {
        let root = parse(
            "name = \"x\"\n[servers.echo]\nbuiltin = \"echo\"\n[[clients]]\na.b = 1\n[[clients]]\nscript = [ { send = \"hi\" }, [1, 2] ]\n",
        )
        .unwrap();
        let keys: Vec<&str> = table(&root).iter().map(|e| e.key).collect();
        assert_eq!(keys, ["name", "servers", "clients"]);
        let echo = get(get(&root, "servers"), "echo");
        assert_eq!(get(echo, "builtin").kind, NodeKind::Str("echo"));
        let NodeKind::Array(clients) = &get(&root, "clients").kind else {
            panic!()
        };
        assert_eq!(clients.len(), 2);
        assert_eq!(get(get(&clients[0], "a"), "b").kind, NodeKind::Int(1));
        let NodeKind::Array(script) = &get(&clients[1], "script").kind else {
            panic!()
        };
        assert_eq!(get(&script[0], "send").kind, NodeKind::Str("hi"));
    }

    #[test]
    fn a_header_table_spans_its_whole_header() {
        let source = "[ servers . echo ]\nbuiltin = \"echo\"\n[[ clients ]]\nconnect = \"echo\"\n";
        let root = parse(source).unwrap();
        let echo = get(get(&root, "servers"), "echo");
        assert_eq!(&source[echo.span.clone()], "[ servers . echo ]");
        let NodeKind::Array(clients) = &get(&root, "clients").kind else {
            panic!()
        };
        assert_eq!(&source[clients[0].span.clone()], "[[ clients ]]");
    }

    #[test]
    fn spans_point_at_keys_and_values() {
        let source = "timeout = \"5s\"\n";
        let root = parse(source).unwrap();
        let entry = &table(&root)[0];
        assert_eq!(&source[entry.key_span.clone()], "timeout");
        assert_eq!(&source[entry.value.span.clone()], "\"5s\"");
    }

    #[test]
    fn the_rules_for_defining_a_table_twice_hold() {
        assert!(error("a = 1\na = 2\n")
            .message
            .contains("duplicate key `a`"));
        assert!(error("[a]\n[a]\n")
            .message
            .contains("defined more than once"));
        assert!(error("[a]\nb.c = 1\n[a.b]\n")
            .message
            .contains("defined more than once"));
        assert!(error("[a.b]\n[a]\nb.c = 1\n")
            .message
            .contains("dotted key"));
        assert!(error("a = [1]\n[[a]]\n").message.contains("duplicate key"));
        assert!(error("a = { b = 1 }\na.c = 2\n")
            .message
            .contains("inline table"));
        assert!(error("x = 1\nx.y = 2\n").message.contains("an integer"));
        // What TOML allows: a header under a dotted table, a parent table defined
        // after its child, a header inside the last table of an array.
        parse("[a]\nb.c = 1\n[a.b.d]\n").unwrap();
        parse("[a.b]\n[a]\nc = 1\n").unwrap();
        parse("[[a]]\n[a.b]\nc = 1\n[[a]]\n[a.b]\n").unwrap();
    }

    #[test]
    fn bad_scalars_and_deep_nesting_are_errors_not_panics() {
        assert!(error("a = 99999999999999999999\n")
            .message
            .contains("out of range"));
        assert!(error("a = 1979-13-45\n").span.start > 0);
        assert!(error("a = echo\n").message.contains("quoted"));
        let deep = format!("a = {}{}\n", "[".repeat(500), "]".repeat(500));
        assert!(error(&deep).message.contains("nested"));
        let deep = format!("a = {}1{}\n", "{ b = ".repeat(500), " }".repeat(500));
        assert!(error(&deep).message.contains("nested"));
    }

    #[test]
    fn the_direct_reader_takes_everyday_files_and_builds_the_token_lists_tree() {
        let everyday = concat!(
            "# a comment\r\n",
            "name = \"x\" # trailing\n",
            "description = \"\"\"\nline \\\"one\\\"\nquote at the end\"\"\"\"\n",
            "raw = '''C:\\path'''\n",
            "'quoted key' = 'lit'\n",
            "a . \"b\" = [ 1, -2_000, 0x1F, 1.5e3, inf, true, 1979-05-27T07:32:00Z, ]\n",
            "[servers.echo]\n",
            "builtin = \"echo\"\n",
            "[[clients]]\n",
            "script = [\n  { send = { repeat = \"x\", times = 64 } }, # one\n  {},\n  [ [ ] ]\n]\n",
        );
        let direct = parse_direct(everyday).expect("an everyday file is read directly");
        assert_eq!(direct, parse_with_token_list(everyday).unwrap());
    }

    #[test]
    fn what_the_direct_reader_does_not_take_is_parsed_the_full_way() {
        for source in [
            // TOML that the direct reader leaves to the full parser:
            "a = { b = 1,\n c = 2 }\n",
            "a = { b = 1, }\n",
            "a = 1979-05-27 07:32:00\n",
            "\u{feff}a = 1\n",
            // and documents that are not TOML at all:
            "a = \"unclosed\n",
            "a = 1 b = 2\n",
            "[a\n",
            "a = [1 2]\n",
            "a = \"\"\"never closed\n",
        ] {
            assert_eq!(parse_direct(source), None, "{source:?}");
            assert_eq!(parse(source), parse_with_token_list(source), "{source:?}");
        }
        // Valid but refused by the builder: the direct reader gives up, and the
        // error is the full parser's.
        assert_eq!(parse_direct("a = 1\na = 2\n"), None);
        assert!(error("a = 1\na = 2\n").message.contains("duplicate key"));
    }

    #[test]
    fn plain_inline_tables_build_the_same_tree_as_the_events_and_leave_the_rest_to_them() {
        // Each is one script; the steps that are not plain (a dotted key, a
        // float, an escape, a negative number, an array) go through the events,
        // and plain steps after them are read plainly again.
        let steps = [
            r#"{ send = "hi" }"#,
            r#"{ send = { repeat = "x", times = 64 }, timeout = "2s" }"#,
            r#"{ 'send' = "hi", "chunk" = 3 }"#,
            r#"{ expect = { json = { ok = true, n = 0, s = '' } } }"#,
            "{}",
            "{ a = {}, b = { c = { d = false } } }",
            "{ a.b = 1 }",
            "{ a = 1.5 }",
            r#"{ a = "tab\tand quote\"" }"#,
            "{ a = -1 }",
            "{ a = [1, { b = 2 }] }",
            r#"{ "k\u0041" = 1 }"#,
            "{ a = 1979-05-27 }",
            "{ a = 0x10 }",
            "{ a = 1_000 }",
            r#"{ a = """x""" }"#,
        ];
        for step in steps {
            let one = format!("script = [ {step} ]\n");
            assert!(parse_direct(&one).is_some(), "{one:?}");
        }
        let document = format!("script = [\n  {}\n]\n", steps.join(",\n  "));
        let direct = parse_direct(&document).expect("read directly");
        assert_eq!(direct, parse_with_token_list(&document).unwrap());
        // Given up on deep inside, at every level: the levels are then read
        // through the events, once each, and make the same tree. So do a table
        // of more keys than a step has and the plain tables after them.
        let wide: Vec<String> = (0..40).map(|i| format!("k{i} = {{ v = {i} }}")).collect();
        let wide = format!("{{ {} }}", wide.join(", "));
        let mut nested = String::from("1.5");
        for level in 0..50 {
            nested = format!("{{ plain = {{ a = {level} }}, wide = {wide}, n = {nested} }}");
        }
        let document = format!("deep = {nested}\nafter = [ {{ a = 1 }}, {wide}, {{ b = 2 }} ]\n");
        let direct = parse_direct(&document).expect("read directly");
        assert_eq!(direct, parse_with_token_list(&document).unwrap());
        // Not TOML: each is refused, with the full parser's error.
        for step in [
            "{ a = 1, a = 2 }",
            r#"{ a = 1, "a" = 2 }"#,
            "{ a = 1 b = 2 }",
            "{ a = }",
            "{ = 1 }",
            "{ a = { b = 1 }, a.c = 2 }",
            "{ a = tru }",
            "{ a = 01 }",
        ] {
            let source = format!("script = [ {step} ]\n");
            assert_eq!(parse_direct(&source), None, "{source:?}");
            assert_eq!(parse(&source), parse_with_token_list(&source), "{source:?}");
            assert!(parse(&source).is_err(), "{source:?}");
        }
    }

    /// What `toml_parser`'s decoder makes of a scalar's text.
    fn decoded(text: &str, encoding: Option<Encoding>) -> Option<NodeKind<'_>> {
        let mut errors = FirstError::default();
        let mut value = Cow::Borrowed("");
        let span = Span::new_unchecked(0, text.len());
        let kind = Raw::new_unchecked(text, encoding, span).decode_scalar(&mut value, &mut errors);
        if errors.0.is_some() {
            return None;
        }
        match kind {
            ScalarKind::String => Some(NodeKind::Str(leaked_arena().alloc_str(&value))),
            ScalarKind::Integer(radix) => i64::from_str_radix(&value, radix.value())
                .ok()
                .map(NodeKind::Int),
            _ => None,
        }
    }

    #[test]
    fn plain_scalars_and_keys_are_what_the_decoder_makes_of_them() {
        let mut texts: Vec<String> = (0u8..=127).map(|b| format!("a{}b", b as char)).collect();
        texts.extend(
            ["", "x", "hello world", "tab\there", "é", "a\\nb", "\"", "'"].map(String::from),
        );
        let mut plain = 0;
        for text in &texts {
            for (quoted, encoding) in [
                (format!("\"{text}\""), Encoding::BasicString),
                (format!("'{text}'"), Encoding::LiteralString),
            ] {
                if let Some(kind) = plain_scalar(&quoted, Some(encoding)) {
                    plain += 1;
                    assert_eq!(Some(kind), decoded(&quoted, Some(encoding)), "{quoted:?}");
                }
                if let Some(key) = plain_text(&quoted, Some(encoding)) {
                    let mut decoded_key = Cow::Borrowed("");
                    let mut errors = FirstError::default();
                    let span = Span::new_unchecked(0, quoted.len());
                    Raw::new_unchecked(&quoted, Some(encoding), span)
                        .decode_key(&mut decoded_key, &mut errors);
                    assert!(errors.0.is_none(), "{quoted:?}");
                    assert_eq!(key, decoded_key, "{quoted:?}");
                }
            }
        }
        assert!(plain > 180, "the fast path took only {plain} strings");
        let numbers = [
            "0",
            "7",
            "64",
            "1000",
            "999999999999999999",
            "9223372036854775807",
        ];
        for text in numbers
            .into_iter()
            .chain(["00", "01", "-1", "+1", "1_000", "0x1F", "1e3", "1.5"])
        {
            if let Some(kind) = plain_scalar(text, None) {
                assert_eq!(Some(kind), decoded(text, None), "{text:?}");
            }
        }
        assert_eq!(plain_scalar("64", None), Some(NodeKind::Int(64)));
        for refused in ["00", "01", "-1", "1_000", "9223372036854775807", "true"] {
            assert_eq!(plain_scalar(refused, None), None, "{refused:?}");
        }
        for (key, bare) in [
            ("send", true),
            ("a-b_9", true),
            ("", false),
            ("a.b", false),
            ("é", false),
        ] {
            assert_eq!(is_bare_key(key), bare, "{key:?}");
        }
    }

    #[test]
    fn a_table_of_many_keys_is_indexed_and_still_finds_duplicates() {
        let mut source: String = (0..100).map(|i| format!("k{i} = {i}\n")).collect();
        parse(&source).unwrap();
        source.push_str("k57 = 1\n");
        assert!(error(&source).message.contains("`k57`"));
    }
}
