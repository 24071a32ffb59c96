//! The `palisade` binary: parses the command line and hands over to [`palisade_server::cli`].

use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    palisade_server::cli::run(palisade_server::cli::Cli::parse()).await
}
