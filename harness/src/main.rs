//! The `wirecheck` binary: everything lives in the library; this only maps the
//! outcome to an exit code.
//!
//! It allocates with the C library's allocator. mimalloc was faster per
//! allocation, but a process paid for it before `main`: its start-up and the
//! transparent huge pages it asks for cost about a millisecond of every run (1.1 ms
//! of a one-exchange run on the VMs we measure on), and its arenas doubled the peak
//! RSS of a bulk transfer. Since the loader stopped allocating per key and string
//! (scenario/tree.rs), it makes about two allocations per script step, and the C
//! allocator loads a 2,000-step file as fast (BENCHMARKS.md, "Morning of 28 Nov").

fn main() {
    let code = wirecheck::cli::main_with_args(std::env::args_os());
    // Everything is written and every program stopped by now; what is left is
    // giving memory and descriptors back, which the kernel does at once for the
    // whole process. So: flush, and leave without exit handlers (with mimalloc,
    // its teardown returned pages one `madvise` at a time).
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: `_exit` takes a plain integer and does not return; no Rust value is
    // used after it.
    unsafe { libc::_exit(code) }
}
