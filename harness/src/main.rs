//! The `wirecheck` binary: everything lives in the library; this only maps the
//! outcome to an exit code.

fn main() {
    std::process::exit(wirecheck::cli::main_with_args(std::env::args_os()));
}
