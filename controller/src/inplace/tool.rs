//! Running the filesystem tools an in-place encryption needs (`e2fsck`,
//! `resize2fs`, `btrfs`, `mount`), and their errors.

use crate::io::read_at;
use std::path::Path;
use std::process::Command;

/// The `N` bytes at `offset` of `path` (a superblock); `None` when the
/// device is shorter.
pub(super) fn read_block<const N: usize>(
    path: &Path,
    offset: u64,
) -> Result<Option<[u8; N]>, ToolError> {
    let f = std::fs::File::open(path).map_err(ToolError::read(path))?;
    let mut block = [0u8; N];
    let read = read_at(&f, offset, &mut block).map_err(ToolError::read(path))?;
    Ok((read == N).then_some(block))
}

/// Why a filesystem cannot be read, checked or shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ToolError {
    /// Reading the device failed.
    #[error("cannot read {path}: {source}")]
    Read {
        /// Device.
        path: String,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// A tool failed or could not run.
    #[error("`{tool}` on {path} failed: {reason}")]
    Tool {
        /// The command.
        tool: &'static str,
        /// Device.
        path: String,
        /// Its exit status and last output lines.
        reason: String,
    },
}

impl ToolError {
    /// The error of reading (or sizing) `path`, for `map_err`.
    pub(super) fn read(path: &Path) -> impl Fn(std::io::Error) -> ToolError + '_ {
        move |source| ToolError::Read {
            path: path.display().to_string(),
            source,
        }
    }
}

/// Runs a tool; its stdout, or its status and last lines as the error.
/// e2fsck's exit code 1 means "errors corrected", which is success here.
pub(super) fn run(tool: &'static str, cmd: &mut Command, path: &Path) -> Result<String, ToolError> {
    let fail = |reason: String| ToolError::Tool {
        tool,
        path: path.display().to_string(),
        reason,
    };
    let out = cmd
        .env("LC_ALL", "C")
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let ok = out.status.success() || (tool == "e2fsck" && out.status.code() == Some(1));
    if !ok {
        let text = String::from_utf8_lossy(&out.stderr).to_string()
            + &String::from_utf8_lossy(&out.stdout);
        let tail: Vec<&str> = text.lines().rev().take(3).collect();
        return Err(fail(format!(
            "{}: {}",
            out.status,
            tail.into_iter().rev().collect::<Vec<_>>().join(" / ")
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}
