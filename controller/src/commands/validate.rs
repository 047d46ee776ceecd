//! `volctl validate`: every diagnostic of a config, at once.

use crate::cli::output::outln;
use crate::cli::output::Output;
use crate::cli::Exit;
use anyhow::Result;
use std::path::PathBuf;

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl validate -f examples/node.yaml\n  volctl validate -f base.yaml -f volumes.yaml -o json\n  volctl validate --talos -f node.yaml   # does it also run on Talos?\n\nSeveral files are one config: a document defined twice is an error naming both places.";

/// `volctl validate` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Config files (repeatable; together one config).
    #[arg(short = 'f', long = "file", required = true)]
    pub files: Vec<PathBuf>,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
    /// Also report every volctl extension used (a field or value Talos does not read).
    #[arg(long)]
    pub talos: bool,
}

/// Validates; prints diagnostics (stderr for text, stdout for JSON).
pub fn exec(args: Args) -> Result<Exit> {
    let (parsed, _) = api_types::parse_files(&args.files);
    let docs = parsed.documents.len();
    let mut all = parsed.diagnostics;
    let extensions = parsed.extensions.len();
    if args.talos {
        all.extend(parsed.extensions);
    }
    let errors = all.iter().filter(|d| d.is_error()).count();
    if args.output == Output::Json {
        let mut v =
            serde_json::json!({"valid": errors == 0, "documents": docs, "diagnostics": all});
        if args.talos {
            v["talosCompatible"] = serde_json::json!(errors == 0 && extensions == 0);
        }
        outln!("{}", serde_json::to_string_pretty(&v)?)?;
    } else {
        for d in &all {
            eprintln!("{d}");
        }
        if errors == 0 {
            outln!("{docs} document(s) valid in {} file(s)", args.files.len())?;
        } else {
            eprintln!("{errors} error(s)");
        }
        if args.talos && errors == 0 {
            outln!("{}", talos_verdict(extensions))?;
        }
    }
    Ok(if errors == 0 {
        Exit::Success
    } else {
        Exit::Failure
    })
}

/// The `--talos` summary line.
fn talos_verdict(extensions: usize) -> String {
    if extensions == 0 {
        "Talos: no volctl extension used; the documents read the same on a Talos node".into()
    } else {
        format!("Talos: {extensions} volctl extension(s) used (listed above); a Talos node refuses or ignores them")
    }
}
