//! The shared vocabulary of wirecheck: the few plain types that the scenario model,
//! the plan, the runner, the servers, the event stream and the reporters all speak.
//! This module is a leaf: it imports nothing from the rest of the crate, so every
//! layer may use it without reaching into another layer.

use serde::Serialize;

/// Which half (or both) of a TCP connection a `shutdown` closes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownHow {
    Write,
    Read,
    Both,
}
