//! Scenario files: the model ([`model`]), the loader that builds it from TOML with
//! exact source positions ([`load`]), and the diagnostics it reports ([`diag`]).

pub mod data;
pub mod diag;
pub mod load;
pub mod model;
pub mod tree;

pub use diag::{quote_location, quote_source, quote_span, Diagnostic, LineIndex, LoadError};
pub use load::{load_file, load_file_then, load_str};
pub use model::*;
