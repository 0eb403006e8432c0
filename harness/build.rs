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
//!
//! It also links GCC's unwinder statically (`libgcc_eh.a`, what `gcc
//! -static-libgcc` links) instead of the shared `libgcc_s.so.1` that Rust's
//! standard library asks for. Loading `libgcc_s` costs every start of the process
//! its constructor, which asks the CPU what it supports with `cpuid` instructions;
//! on a virtual machine each of those traps to the hypervisor. Measured on the
//! 2-core VM this project is benchmarked on: `wirecheck --version` went from 2.2
//! to 1.9 ms, a 1,000-exchange run by about 0.3 ms (BENCHMARKS.md,
//! "Second session of 28 Nov"). The library's own native libraries come before the standard
//! library's on the linker's command line, so the unwinder's symbols are found in
//! the archive first and `--as-needed` (rustc's default) drops `libgcc_s`.
//! Panics unwind exactly as before: the same unwinder, linked in (the test of a
//! panicking actor runs on it). Builds with a sanitizer keep the shared one, which
//! the sanitizer runtimes load anyway. The fuzz targets, which `ci/fuzz.sh` builds
//! without a sanitizer, link the static one beside libFuzzer's C++ runtime, and run
//! and report panics as before.
fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    if os == "linux" && env == "gnu" {
        println!("cargo:rustc-link-arg-bins=-no-pie");
        let sanitized = std::env::var_os("CARGO_CFG_SANITIZE").is_some();
        // With `crt-static` the standard library links `libgcc_eh` itself.
        let crt_static = std::env::var("CARGO_CFG_TARGET_FEATURE")
            .is_ok_and(|features| features.split(',').any(|f| f == "crt-static"));
        if !sanitized && !crt_static {
            // `-bundle`: named to the final link, where the C compiler driver
            // finds it in its own library folder, not copied into the rlib.
            println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
        }
    }
    println!("cargo:rerun-if-changed=build.rs");
}
