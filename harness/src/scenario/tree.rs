//! A small spanned TOML tree, built from the `toml` crate's borrowed parse.
//!
//! The loader validates a scenario with plain pattern matching over one enum, and
//! every error can still point at the exact key or value. The parse is the
//! `toml` crate's `DeTable`: it borrows strings from the source and keeps only
//! spans, where `toml_edit`'s document (used before) kept every key's formatting
//! and ran three times slower; for a 2,000-step file the parse was most of a
//! whole `wirecheck run` (BENCHMARKS.md, "The core, as a user runs it").

use std::ops::Range;

use toml::de::{DeTable, DeValue};

/// A TOML value with the byte range it came from.
#[derive(Debug, Clone)]
pub struct Node {
    pub span: Range<usize>,
    pub kind: NodeKind,
}

#[derive(Debug, Clone)]
pub enum NodeKind {
    Str(String),
    Int(i64),
    /// The value, for `json` matchers (NaN when the text could not be read).
    Float(f64),
    Bool(bool),
    Datetime,
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

/// One `key = value` of a table, with the key's own span.
#[derive(Debug, Clone)]
pub struct Entry {
    pub key: String,
    pub key_span: Range<usize>,
    pub value: Node,
}

impl NodeKind {
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

/// A TOML syntax error: where, and the parser's one-line message.
#[derive(Debug)]
pub struct SyntaxError {
    pub span: Range<usize>,
    pub message: String,
}

/// Parses a whole document into its root table.
pub fn parse(source: &str) -> Result<Node, SyntaxError> {
    let root = DeTable::parse(source).map_err(|error| SyntaxError {
        span: error.span().unwrap_or(0..0),
        message: error.message().trim().to_owned(),
    })?;
    let span = root.span();
    from_table(root.into_inner(), span)
}

fn from_table(table: DeTable<'_>, span: Range<usize>) -> Result<Node, SyntaxError> {
    let mut entries = Vec::with_capacity(table.len());
    for (key, value) in table {
        let key_span = key.span();
        let value_span = value.span();
        entries.push(Entry {
            key: key.into_inner().into_owned(),
            key_span,
            value: from_value(value.into_inner(), value_span)?,
        });
    }
    Ok(Node {
        span,
        kind: NodeKind::Table(entries),
    })
}

fn from_value(value: DeValue<'_>, span: Range<usize>) -> Result<Node, SyntaxError> {
    let kind = match value {
        DeValue::String(s) => NodeKind::Str(s.into_owned()),
        DeValue::Integer(i) => match i64::from_str_radix(i.as_str(), i.radix()) {
            Ok(value) => NodeKind::Int(value),
            Err(_) => {
                return Err(SyntaxError {
                    span,
                    message: "integer out of range (TOML integers are 64-bit signed)".into(),
                })
            }
        },
        DeValue::Float(f) => NodeKind::Float(
            // TOML allows `_` between digits; Rust's parser does not.
            f.as_str().replace('_', "").parse().unwrap_or(f64::NAN),
        ),
        DeValue::Boolean(b) => NodeKind::Bool(b),
        DeValue::Datetime(_) => NodeKind::Datetime,
        DeValue::Array(array) => {
            let mut items = Vec::with_capacity(array.len());
            for item in array {
                let item_span = item.span();
                items.push(from_value(item.into_inner(), item_span)?);
            }
            NodeKind::Array(items)
        }
        DeValue::Table(table) => return from_table(table, span),
    };
    Ok(Node { span, kind })
}
