use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    authmd::cli::run(authmd::cli::Cli::parse())
}
