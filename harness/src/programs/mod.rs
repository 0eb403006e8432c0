//! Programs under test: servers and clients the user wrote, started for a scenario.
//!
//! - [`process`]: spawning, readiness, output capture, exit status, stopping.
//! - [`sockets`]: the kernel's socket table, for `ready = "listening"`, naming the
//!   process that holds a port, and `await_read`.
//! - [`tree`]: the started processes and their descendants, the child subreaper
//!   and the last sweep.
//! - [`placeholders`]: `{port}`, `{port:NAME}`, `{host:NAME}`, `{addr:NAME}`.

pub mod placeholders;
pub mod process;
pub mod sockets;
pub mod tree;
