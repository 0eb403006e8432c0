//! The `wirecheck` binary: everything lives in the library; this only maps the
//! outcome to an exit code.

fn main() {
    keep_freed_memory_for_reuse();
    std::process::exit(wirecheck::cli::main_with_args(std::env::args_os()));
}

/// Large blocks come from the heap and freed memory stays there for the next
/// allocation. glibc's defaults map every block over 128 KiB on its own and hand it
/// back to the kernel when freed, so the loader's token list, freed after parsing,
/// could not be reused for the steps built next: each new page is a page fault, and
/// on a virtual machine a fresh page costs microseconds of wall time (a 2,000-step
/// file touched about 1,000 of them). Whatever memory a run frees is still given
/// back when the process exits, moments later.
fn keep_freed_memory_for_reuse() {
    // SAFETY: mallopt only sets allocator parameters; it is called before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
