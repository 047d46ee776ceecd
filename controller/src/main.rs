//! The `volctl` command: parse, dispatch, report. Each verb is in
//! `commands/`; the shared command-line vocabulary in `cli/`.

mod cli;
mod commands;

use clap::Parser;
use cli::{Cli, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match commands::exec(cli.command, &cli.remote) {
        Ok(exit) => exit.into(),
        Err(e) => {
            eprintln!("error: {}", cli::report(&e));
            Exit::Failure.into()
        }
    }
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}
