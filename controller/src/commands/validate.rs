//! `volctl validate`: every diagnostic of a config, at once.

use crate::cli::output::Output;
use crate::cli::Exit;
use anyhow::Result;
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl validate -f examples/node.yaml\n  volctl validate -f base.yaml -f volumes.yaml -o json\n\nSeveral files are one config: a document defined twice is an error naming both places.";

/// `volctl validate` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config files (repeatable; together one config).
    #[arg(short = 'f', long = "file", required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Validates; prints diagnostics (stderr for text, stdout for JSON).
pub fn exec(args: Args) -> Result<Exit> {
    let (parsed, _) = api_types::parse_files(&args.files);
    let docs = parsed.documents.len();
    let all = parsed.diagnostics;
    let errors = all.iter().filter(|d| d.is_error()).count();
    if args.output == Output::Json {
        let v = serde_json::json!({"valid": errors == 0, "documents": docs, "diagnostics": all});
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for d in &all {
            eprintln!("{d}");
        }
        if errors == 0 {
            println!("{docs} document(s) valid in {} file(s)", args.files.len());
        } else {
            eprintln!("{errors} error(s)");
        }
    }
    Ok(if errors == 0 {
        Exit::Success
    } else {
        Exit::Failure
    })
}
