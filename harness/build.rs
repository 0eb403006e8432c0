//! Links the `wirecheck` binary as a position-dependent executable on Linux.
//!
//! A position-independent executable is relocated by the dynamic loader at every
//! start: about 19,000 relocations, which write (and so copy) every page of the
//! binary's relocated read-only data before `main` runs. wirecheck is started once
//! per scenario run, often from scripts and CI loops, and that copying was about a
//! millisecond of every run, a quarter of a one-exchange run's whole wall time
//! (BENCHMARKS.md, "The core, as a user runs it"). Linked at a fixed address, the
//! same data is mapped straight from the file. The cost: the binary's own code and
//! data are not placed at a random address (libraries and the heap still are), which
//! matters little for a test tool that runs the user's own programs anyway.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
    println!("cargo:rerun-if-changed=build.rs");
}
