//! Loop devices for disk images: a partition of an image file is attached
//! by offset and size (no partition scanning, no udev needed), and detached
//! when the handle drops — also on error. With autoclear, the kernel keeps
//! the device while something (a mount, dm-crypt) still holds it and frees it
//! after.

use std::fs::OpenOptions;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// An attached loop device; detached on drop unless something holds it.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    device: Option<loopdev::LoopDevice>,
}

impl LoopDevice {
    /// Attaches `len` bytes of `image` from `offset`, with autoclear.
    pub fn attach(image: &Path, offset: u64, len: u64) -> std::io::Result<Self> {
        let backing = OpenOptions::new().read(true).write(true).open(image)?;
        let control = loopdev::LoopControl::open()?;
        // Another process may grab the free device first: retry a few times.
        for _ in 0..8 {
            let device = control.next_free()?;
            let attached = device
                .with()
                .offset(offset)
                .size_limit(len)
                .autoclear(true)
                .attach_fd(backing.as_raw_fd());
            match attached {
                Ok(()) => {}
                Err(e) if e.raw_os_error() == Some(libc::EBUSY) => continue,
                Err(e) => return Err(e),
            }
            let path = device
                .path()
                .ok_or_else(|| std::io::Error::other("a loop device without a path"))?;
            return Ok(LoopDevice {
                path,
                device: Some(device),
            });
        }
        Err(std::io::Error::other("no free loop device after 8 tries"))
    }

    /// The device node, e.g. `/dev/loop3`.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        if let Some(d) = self.device.take() {
            // With autoclear, detaching fails harmlessly (EBUSY) while a mount
            // or dm device still holds it; the kernel frees it afterwards.
            let _ = d.detach();
        }
    }
}
