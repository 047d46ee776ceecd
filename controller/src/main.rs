//! The `volctl` command: parse, dispatch, report. Each verb is in
//! `commands/`; the shared command-line vocabulary in `cli/`.

mod cli;
mod commands;

use clap::Parser;
use cli::{Cli, Exit};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose, cli.command.is_server());
    if cli.command.shows_kdf_progress() && std::io::IsTerminal::is_terminal(&std::io::stderr()) {
        controller::device::kdf_watch::watch(Box::new(cli::kdf_ticker::Ticker::start()));
    }
    match commands::exec(cli.command, cli.remote) {
        Ok(exit) => exit.into(),
        // The reader of stdout went away (`volctl status | head -1`): as
        // a program killed by SIGPIPE, end at once without a word.
        Err(e) if reader_gone(&e) => ExitCode::from(141),
        Err(e) => {
            eprintln!("error: {}", cli::report(&e));
            Exit::Failure.into()
        }
    }
}

/// Whether `e` is a write to a closed pipe.
fn reader_gone(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

/// Logs to stderr: warnings for a command, one line per request for a
/// server (`serve`, `kms-server`); `-v` more, `RUST_LOG` overrides.
fn init_logging(verbose: u8, server: bool) {
    let default = match (verbose, server) {
        (0, false) => "warn",
        (0, true) | (1, _) => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        // Colours on a terminal only: not into the journal or a log file.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .init();
}
