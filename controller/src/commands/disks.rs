//! `volctl disks`: what volctl sees on each disk, with the names disk
//! selectors use, so selectors can be written against real facts.

use crate::cli::output::Output;
use crate::cli::prelude::DiskArgs;
use crate::cli::Exit;
use anyhow::Result;
use controller::provision::{discover, pretty, Disk};

/// Examples shown by `--help`.
pub const HELP: &str = "Example:\n  volctl disks\n  volctl disks --disk disk.img -o json\n\nThe field names are those of `disk` in a disk selector: `disk.size > 100u * GiB && disk.transport == \"nvme\"`.";

/// `volctl disks` arguments.
#[derive(Debug, clap::Args)]
pub struct Args {
    /// Disks.
    #[command(flatten)]
    pub disks: DiskArgs,
    /// Output format.
    #[arg(short, long, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

/// Prints the disks.
pub fn exec(args: Args) -> Result<Exit> {
    let disks = discover(&args.disks.resolve())?;
    args.output.print(&disks, || table(&disks))?;
    Ok(Exit::Success)
}

fn table(disks: &[Disk]) -> String {
    let mut out = format!(
        "{:<22} {:>9} {:<9} {:<6} {:<11} {:<20} {}\n",
        "DEV_PATH", "SIZE", "TRANSPORT", "SYSTEM", "ROTATIONAL", "MODEL", "PARTITIONS / FREE"
    );
    for d in disks {
        let layout = match (&d.table, &d.contents) {
            (Some(t), _) => {
                let parts: Vec<String> = t.partitions.iter().map(|p| p.label.clone()).collect();
                let free: u64 = t.free.iter().map(|(_, l)| l).sum();
                format!("{} / {} free", parts.join(","), pretty(free))
            }
            (None, None) => "blank".into(),
            (None, Some(what)) => format!("no GPT volctl can use: {what}"),
        };
        out.push_str(&format!(
            "{:<22} {:>9} {:<9} {:<6} {:<11} {:<20} {}\n",
            d.dev_path.display(),
            pretty(d.size),
            if d.transport.is_empty() {
                "-"
            } else {
                &d.transport
            },
            d.system_disk,
            d.rotational,
            if d.model.is_empty() { "-" } else { &d.model },
            layout
        ));
    }
    out
}
