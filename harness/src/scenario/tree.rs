//! A small spanned TOML tree, converted from `toml_edit`'s parse.
//!
//! `toml_edit` keeps a span on every key and value but spreads them over five node
//! types (tables, inline tables, arrays of tables, items, values). Folding them into
//! one enum lets the loader validate a scenario with plain pattern matching, and
//! every error can still point at the exact key or value.

use std::ops::Range;

use toml_edit::{Item, Key, Table, Value};

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
    Float,
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
            NodeKind::Float => "a float",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Datetime => "a date-time",
            NodeKind::Array(_) => "an array",
            NodeKind::Table(_) => "a table",
        }
    }
}

/// Converts a parsed document's root table.
pub fn from_root(table: &Table) -> Node {
    from_table(table, 0..0)
}

fn from_table(table: &Table, fallback: Range<usize>) -> Node {
    let span = table.span().unwrap_or(fallback);
    // Sized up front: toml_edit's iterators give no size hint, and growing a
    // vector of 100,000 steps by doubling copies it again and again.
    let mut entries = Vec::with_capacity(table.len());
    entries.extend(table.iter().map(|(key, item)| {
        entry(key, table.key(key), &span, |key_span| {
            from_item(item, key_span)
        })
    }));
    Node {
        span,
        kind: NodeKind::Table(entries),
    }
}

fn from_item(item: &Item, fallback: Range<usize>) -> Node {
    match item {
        Item::None => Node {
            span: fallback,
            kind: NodeKind::Table(Vec::new()),
        },
        Item::Value(value) => from_value(value, fallback),
        Item::Table(table) => from_table(table, fallback),
        Item::ArrayOfTables(array) => {
            let span = array.span().unwrap_or_else(|| fallback.clone());
            let mut items = Vec::with_capacity(array.len());
            items.extend(
                array
                    .iter()
                    .map(|table| from_table(table, fallback.clone())),
            );
            Node {
                span,
                kind: NodeKind::Array(items),
            }
        }
    }
}

fn from_value(value: &Value, fallback: Range<usize>) -> Node {
    let span = value.span().unwrap_or(fallback);
    let kind = match value {
        Value::String(s) => NodeKind::Str(s.value().clone()),
        Value::Integer(i) => NodeKind::Int(*i.value()),
        Value::Float(_) => NodeKind::Float,
        Value::Boolean(b) => NodeKind::Bool(*b.value()),
        Value::Datetime(_) => NodeKind::Datetime,
        Value::Array(array) => {
            let mut items = Vec::with_capacity(array.len());
            items.extend(array.iter().map(|v| from_value(v, span.clone())));
            NodeKind::Array(items)
        }
        Value::InlineTable(table) => NodeKind::Table({
            let mut entries = Vec::with_capacity(table.len());
            entries.extend(table.iter().map(|(key, v)| {
                entry(key, table.key(key), &span, |key_span| {
                    from_value(v, key_span)
                })
            }));
            entries
        }),
    };
    Node { span, kind }
}

/// One `key = value` of a table or inline table: the key's own span (the table's
/// when toml_edit has none), and the value converted with that span as its fallback.
fn entry(
    name: &str,
    key: Option<&Key>,
    table_span: &Range<usize>,
    value: impl FnOnce(Range<usize>) -> Node,
) -> Entry {
    let key_span = key
        .and_then(Key::span)
        .unwrap_or_else(|| table_span.clone());
    Entry {
        key: name.to_owned(),
        value: value(key_span.clone()),
        key_span,
    }
}
