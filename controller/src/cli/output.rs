//! How results are printed: text for people, JSON on stdout for programs.

use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;
use std::io::Write;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable.
    Text,
    /// JSON on stdout.
    Json,
}

impl Output {
    /// Prints `value` as JSON, or `text()` as it is. A reader that went
    /// away (`| head`) is an error `main` ends quietly on, not a panic.
    pub fn print<T: Serialize>(self, value: &T, text: impl FnOnce() -> String) -> Result<()> {
        let shown = match self {
            Output::Json => serde_json::to_string_pretty(value)? + "\n",
            Output::Text => text(),
        };
        let mut out = std::io::stdout().lock();
        out.write_all(shown.as_bytes())?;
        out.flush()?;
        Ok(())
    }
}

/// `print!` to stdout that returns the write's error instead of panicking:
/// a reader that went away ends volctl quietly (`main`).
macro_rules! out {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        write!(std::io::stdout().lock(), $($arg)*)
    }};
}

/// `println!` to stdout that returns the write's error (see [`out!`]).
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}

pub(crate) use {out, outln};
