//! Swap on a volume (`SwapVolumeConfig`): made with `mkswap` when the
//! device is blank, enabled with `swapon`, disabled with `swapoff`. What
//! is on swap is gone at the next boot anyway, which is why a swap volume
//! whose keys no longer open it is made again (never a partition that
//! holds anything but swap or LUKS2).

use super::fs::{run_tool, FsError};
use std::path::Path;
use std::process::Command;

/// What the filesystem probe names a swap signature.
pub const SIGNATURE: &str = crate::device::SWAP_SIGNATURE;

/// What `volctl status` shows in a swap volume's MOUNT column (as `lsblk`).
pub const SHOWN_AS: &str = "[SWAP]";

/// Whether a probe's answer is swap.
pub fn is_swap(found: &str) -> bool {
    found.starts_with(SIGNATURE)
}

/// Makes swap on `device`, labelled `label`.
pub fn make(device: &Path, label: &str) -> Result<(), FsError> {
    let mut cmd = Command::new("mkswap");
    cmd.args(["-L", label]).arg(device);
    run_tool(cmd, device)
}

/// Enables swap on `device` (nothing to do when it is on: a second boot
/// run, or the initramfs's).
pub fn on(device: &Path) -> Result<(), FsError> {
    if is_on(device) {
        return Ok(());
    }
    let mut cmd = Command::new("swapon");
    cmd.arg(device);
    run_tool(cmd, device)
}

/// Disables swap on `device`.
pub fn off(device: &Path) -> Result<(), FsError> {
    let mut cmd = Command::new("swapoff");
    cmd.arg(device);
    run_tool(cmd, device)
}

/// Whether swap is on `device` (`/proc/swaps` names `/dev/dm-3` for
/// `/dev/mapper/…`: compared by device number).
pub fn is_on(device: &Path) -> bool {
    let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
    in_swaps(&swaps, device)
}

/// Whether the `/proc/swaps` text lists `device`.
fn in_swaps(swaps: &str, device: &Path) -> bool {
    swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .any(|on| super::disks::same_device(Path::new(on), device))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_swaps_is_read_by_device_not_by_header() {
        let swaps = "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n/dev/dm-3                               partition\t131068\t\t0\t\t-2\n";
        assert!(in_swaps(swaps, Path::new("/dev/dm-3")));
        assert!(!in_swaps(swaps, Path::new("/dev/dm-4")));
        assert!(!in_swaps(swaps, Path::new("Filename")));
        assert!(is_swap("swap space"));
        assert!(!is_swap("ext2/3/4 filesystem"));
    }
}
