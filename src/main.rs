use std::process::ExitCode;

use clap::Parser;

/// mimalloc instead of the system allocator: an introspection allocates about eighty times,
/// and glibc's malloc and free were about a sixth of its instructions (`bench/README.md`).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    authmd::cli::run(authmd::cli::Cli::parse())
}
