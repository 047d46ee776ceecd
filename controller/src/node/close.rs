//! Closing what a boot opened: unmount (or disable swap), then close
//! dm-crypt, in reverse order of mounting; the status is updated, so
//! closing twice does nothing the second time.

use crate::node::fs;
use crate::node::online;
use crate::node::paths::DM_PREFIX;
use crate::node::status::{BootStatus, Phase, VolumeStatus};
use crate::node::swap;
use std::path::Path;

/// Why a volume was not closed.
#[derive(Debug, thiserror::Error)]
pub enum CloseError {
    /// Its online reencryption did not stop.
    #[error(transparent)]
    OnlineRun(#[from] online::NotStopped),
    /// It could not be unmounted (in use), or its swap disabled.
    #[error(transparent)]
    Unmount(#[from] fs::FsError),
    /// Its dm-crypt device could not be closed.
    #[error(transparent)]
    Deactivate(#[from] crate::device::DeviceError),
}
/// Closes everything a boot opened, in reverse order of mounting (STATE,
/// moved into place last, first): unmount, then close the dm-crypt device.
/// The status is updated, so closing twice does nothing the second time.
/// Returns one line per step and the errors.
pub fn close(status: &mut BootStatus) -> (Vec<String>, Vec<CloseError>) {
    let mut done = Vec::new();
    let mut errors = Vec::new();
    stop_online_runs(status, &mut done, &mut errors);
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

/// Asks every online reencryption to stop at once (each after its current
/// step), then waits for them: the volumes close after.
fn stop_online_runs(status: &BootStatus, done: &mut Vec<String>, errors: &mut Vec<CloseError>) {
    let asked: Vec<_> = status
        .volumes
        .iter()
        .filter_map(|v| Some((v.name.as_str(), v.reencryption.as_ref()?)))
        .filter(|(_, p)| online::ask_to_stop(p))
        .collect();
    for (name, p) in asked {
        match online::wait_stopped(name, p) {
            Ok(line) => done.push(line),
            Err(e) => errors.push(e.into()),
        }
    }
}

/// Stops its online reencryption, unmounts one volume, then closes its
/// dm-crypt device (only once it is unmounted); updates its status and
/// appends one line per step to `done`.
pub fn close_volume(v: &mut VolumeStatus, done: &mut Vec<String>) -> Result<(), CloseError> {
    // An online reencryption stops first (after its current step).
    if let Some(p) = &v.reencryption {
        done.extend(online::stop(&v.name, p)?);
    }
    if v.swap {
        let on = v.mapped_device.as_ref().or(v.device.as_ref());
        if let Some(dev) = on {
            swap::off(Path::new(dev))?;
            done.push(format!("disabled swap on {dev}"));
        }
        v.swap = false;
        v.phase = opened_or_located(v);
    }
    if let Some(m) = v.mount_point.clone() {
        fs::umount(Path::new(&m))?;
        done.push(format!("unmounted {m}"));
        v.mount_point = None;
        v.phase = opened_or_located(v);
    }
    if v.mapped_device.is_some() {
        let name = format!("{DM_PREFIX}{}", v.label);
        crate::device::deactivate(&name)?;
        done.push(format!("closed /dev/mapper/{name}"));
        v.mapped_device = None;
        v.phase = Phase::Provisioned;
    }
    Ok(())
}

/// Its phase once nothing uses it: still open, or only there.
fn opened_or_located(v: &VolumeStatus) -> Phase {
    if v.mapped_device.is_some() {
        Phase::Opened
    } else {
        Phase::Located
    }
}
