//! `volctl man-pages --out DIR` (hidden; the package build runs it):
//! `volctl.1` and one page per verb (`volctl-boot.1`, …), made from the
//! command line's own definition, so they never disagree with `--help`.

use crate::cli::{Cli, Exit};
use anyhow::{Context, Result};
use clap::CommandFactory;
use std::io::Write;
use std::path::{Path, PathBuf};

/// `volctl man-pages` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// The folder to write the pages to (made if missing).
    #[arg(long)]
    pub out: PathBuf,
}

/// Writes the pages; prints each file written.
pub fn exec(args: Args) -> Result<Exit> {
    std::fs::create_dir_all(&args.out).with_context(|| format!("making {}", args.out.display()))?;
    let cmd = Cli::command();
    write_page(&args.out, "volctl", cmd.clone())?;
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("volctl-{}", sub.get_name());
        let page = sub.clone().name(name.clone()).bin_name(name.clone());
        write_page(&args.out, &name, page)?;
    }
    Ok(Exit::Success)
}

/// Renders `cmd` as `DIR/NAME.1`.
fn write_page(dir: &Path, name: &str, cmd: clap::Command) -> Result<()> {
    let path = dir.join(format!("{name}.1"));
    let mut out = Vec::new();
    clap_mangen::Man::new(cmd)
        .render(&mut out)
        .with_context(|| format!("rendering {name}(1)"))?;
    std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    // Informational: a closed stdout (`| head`) does not undo the page.
    let _ = writeln!(std::io::stdout(), "{}", path.display());
    Ok(())
}
