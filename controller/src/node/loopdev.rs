//! Loop devices for disk images: a partition of an image file is attached
//! by offset and size (no partition scanning, no udev needed), and detached
//! when the handle drops — also on error. With autoclear, the kernel keeps
//! the device while something (a mount, dm-crypt) still holds it and frees it
//! after.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

const LOOP_CTL_GET_FREE: libc::c_ulong = 0x4C82;
const LOOP_SET_FD: libc::c_ulong = 0x4C00;
const LOOP_CLR_FD: libc::c_ulong = 0x4C01;
const LOOP_SET_STATUS64: libc::c_ulong = 0x4C04;
const LO_FLAGS_AUTOCLEAR: u32 = 4;

#[repr(C)]
struct LoopInfo64 {
    lo_device: u64,
    lo_inode: u64,
    lo_rdevice: u64,
    lo_offset: u64,
    lo_sizelimit: u64,
    lo_number: u32,
    lo_encrypt_type: u32,
    lo_encrypt_key_size: u32,
    lo_flags: u32,
    lo_file_name: [u8; 64],
    lo_crypt_name: [u8; 64],
    lo_encrypt_key: [u8; 32],
    lo_init: [u64; 2],
}

/// An attached loop device; detached on drop unless something holds it.
#[derive(Debug)]
pub struct LoopDevice {
    path: PathBuf,
    file: Option<File>,
}

impl LoopDevice {
    /// Attaches `len` bytes of `image` from `offset`.
    pub fn attach(image: &Path, offset: u64, len: u64) -> std::io::Result<Self> {
        let backing = OpenOptions::new().read(true).write(true).open(image)?;
        let ctl = OpenOptions::new()
            .read(true)
            .write(true)
            .open("/dev/loop-control")?;
        // Another process may grab the free device first: retry a few times.
        for _ in 0..8 {
            // SAFETY: LOOP_CTL_GET_FREE takes no argument and returns a number.
            let n = unsafe { libc::ioctl(ctl.as_raw_fd(), LOOP_CTL_GET_FREE) };
            if n < 0 {
                return Err(std::io::Error::last_os_error());
            }
            let path = PathBuf::from(format!("/dev/loop{n}"));
            let dev = OpenOptions::new().read(true).write(true).open(&path)?;
            // SAFETY: LOOP_SET_FD takes the backing file descriptor.
            if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_FD, backing.as_raw_fd()) } < 0 {
                let e = std::io::Error::last_os_error();
                if e.raw_os_error() == Some(libc::EBUSY) {
                    continue;
                }
                return Err(e);
            }
            // SAFETY: all-zero is a valid loop_info64.
            let mut info: LoopInfo64 = unsafe { std::mem::zeroed() };
            info.lo_offset = offset;
            info.lo_sizelimit = len;
            info.lo_flags = LO_FLAGS_AUTOCLEAR;
            let name = image.display().to_string();
            let n = name.len().min(63);
            info.lo_file_name[..n].copy_from_slice(&name.as_bytes()[..n]);
            // SAFETY: we pass a valid, initialised loop_info64.
            if unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_SET_STATUS64, &info) } < 0 {
                let e = std::io::Error::last_os_error();
                // SAFETY: undo LOOP_SET_FD on the same device.
                unsafe { libc::ioctl(dev.as_raw_fd(), LOOP_CLR_FD, 0) };
                return Err(e);
            }
            return Ok(LoopDevice {
                path,
                file: Some(dev),
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
        if let Some(f) = self.file.take() {
            // With autoclear, clearing fails harmlessly (EBUSY) while a mount
            // or dm device still holds it; the kernel frees it afterwards.
            // SAFETY: LOOP_CLR_FD on a loop device we opened.
            unsafe { libc::ioctl(f.as_raw_fd(), LOOP_CLR_FD, 0) };
        }
    }
}
