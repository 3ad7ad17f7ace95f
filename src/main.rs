//! The `switchyard` binary: parses the command line and hands over to `cli`.

use std::process::ExitCode;

// A run allocates and frees small values by the million (each record's fields, its JSON, its
// keys), from several threads at once; with glibc's allocator those calls took about 40% of
// the CPU of posting the settlement benchmark's journal (see bench/README.md).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    switchyard::cli::main()
}
