//! Closing what a boot opened: unmount, then close dm-crypt, in reverse
//! order of mounting; the status is updated, so closing twice does nothing
//! the second time.

use super::DM_PREFIX;
use crate::node::fs;
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use std::path::Path;
/// Closes everything a boot opened, in reverse order of mounting (STATE,
/// moved into place last, first): unmount, then close the dm-crypt device.
/// The status is updated, so closing twice does nothing the second time.
/// Returns one line per step and the errors.
pub fn close(status: &mut BootStatus) -> (Vec<String>, Vec<String>) {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    let n = status.volumes.len();
    let order: Vec<usize> = std::iter::once(0)
        .filter(|_| n > 0)
        .chain((1..n).rev())
        .collect();
    for i in order {
        if let Err(e) = close_volume(&mut status.volumes[i], &mut done) {
            errors.push(e);
        }
    }
    (done, errors)
}

/// Unmounts one volume, then closes its dm-crypt device (only once it is
/// unmounted); updates its status and appends one line per step to `done`.
pub fn close_volume(v: &mut VolumeStatus, done: &mut Vec<String>) -> Result<(), String> {
    if let Some(m) = v.mount_point.clone() {
        fs::umount(Path::new(&m)).map_err(|e| e.to_string())?;
        done.push(format!("unmounted {m}"));
        v.mount_point = None;
        v.phase = if v.mapped_device.is_some() {
            Phase::Opened
        } else {
            Phase::Located
        };
    }
    if v.mapped_device.is_some() {
        let name = format!("{DM_PREFIX}{}", v.label);
        crate::device::deactivate(&name).map_err(|e| e.to_string())?;
        done.push(format!("closed /dev/mapper/{name}"));
        v.mapped_device = None;
        v.phase = Phase::Provisioned;
    }
    Ok(())
}
