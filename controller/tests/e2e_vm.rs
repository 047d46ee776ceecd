//! The VM suite: the real boot path (dm-crypt, mkfs, mount) in a qemu VM
//! with Debian's kernel, since the host kernel has no device-mapper.
//! Every test here is `#[ignore]`: run them with `make e2e`.
//!
//! Each boot is one qemu run on the same disk image (a reboot is the next
//! run). The guest runs a job script; the host reads the serial console
//! (markers around `volctl status -o json`) and checks the disk itself.

mod common;
mod e2e;
