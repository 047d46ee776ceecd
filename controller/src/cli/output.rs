//! How results are printed: text for people, JSON on stdout for programs.

use anyhow::Result;
use clap::ValueEnum;
use serde::Serialize;

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Human-readable.
    Text,
    /// JSON on stdout.
    Json,
}

impl Output {
    /// Prints `value` as JSON, or `text()` as it is.
    pub fn print<T: Serialize>(self, value: &T, text: impl FnOnce() -> String) -> Result<()> {
        match self {
            Output::Json => println!("{}", serde_json::to_string_pretty(value)?),
            Output::Text => print!("{}", text()),
        }
        Ok(())
    }
}
