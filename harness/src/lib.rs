//! wirecheck: a declarative test harness for TCP and UDP protocol code.
//!
//! The data flow is one-way, so each stage can be tested on its own:
//!
//! ```text
//! scenario file --scenario::load--> Scenario --runner::run_scenario--> events + outcome
//!                                                      |                     |
//!                                        servers (builtin, scripted,   report (console,
//!                                        external processes)            JUnit, JSON)
//! ```
//!
//! The runner never formats output and never writes files; reporters never touch
//! sockets. [`event`] is the one contract between them.

pub mod cli;
pub mod duration;
pub mod event;
pub mod framing;
pub mod fuzz;
pub mod matcher;
pub mod net;
pub mod outcome;
pub mod plan;
pub mod programs;
pub mod proxy;
pub mod report;
pub mod runner;
pub mod scenario;
pub mod schema;
pub mod select;
pub mod servers;
pub mod size;
pub mod suite;
pub mod trace;
pub mod vocab;
