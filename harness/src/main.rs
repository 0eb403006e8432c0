//! The `wirecheck` binary: everything lives in the library; this only maps the
//! outcome to an exit code.

/// mimalloc rather than the C library's allocator. A run's fixed cost is mostly
/// its loader's small allocations (a 2,000-step script is some 18,000 of them) and
/// the fresh pages they land on: with glibc's malloc, loading the 2,000-step
/// exchanges file took 23.5 million instructions, 30% of them in malloc and free,
/// and touched about 640 pages, each a fault that costs microseconds of wall time
/// on a virtual machine; with mimalloc, 17 million instructions and about 150 faults
/// (BENCHMARKS.md, "The core, as a user runs it"). Peak RSS of the 512 MiB bulk
/// echo goes from about 12 to 24 MB, well inside its 64 MiB target.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let code = wirecheck::cli::main_with_args(std::env::args_os());
    // Everything is written and every program stopped by now. What is left is
    // giving memory back, which the kernel does at once for the whole process:
    // the allocator's own teardown at exit would instead return its pages one
    // `madvise` at a time (some 140 calls after a 2,000-step run, half a
    // millisecond of a short run's wall time). So: flush, and leave.
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` takes a plain integer and does not return; no Rust value is
    // used after it.
    unsafe { libc::_exit(code) }
}
