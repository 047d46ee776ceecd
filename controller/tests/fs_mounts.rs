//! Mounts as the boot makes them, on this machine's kernel: an ext4 on a
//! loop device mounted with a user volume's flags (checked in
//! /proc/self/mountinfo), moved, unmounted (online growth needs a kernel
//! that lets this machine resize: the VM suite's `provision` scenario).

use api_types::FilesystemType;
use controller::node::fs::{self, MountOptions};
use controller::node::loopdev::LoopDevice;
use std::path::Path;
use std::process::Command;

fn mkfs(img: &Path, mib: u64) {
    std::fs::File::create(img)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let st = Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(img)
        .status()
        .unwrap();
    assert!(st.success());
}

/// A user volume's flags: nosuid, nodev, noexec, noatime.
fn user_volume_flags() -> MountOptions {
    MountOptions {
        secure: true,
        noexec: true,
        noatime: true,
        read_only: false,
        project_quota: false,
    }
}

/// The flags checked after a mount or a move.
const FLAGS: [&str; 5] = ["nosuid", "nodev", "noexec", "noatime", "rw"];

/// The mount options /proc/self/mountinfo shows for `target`.
fn options_of(target: &Path) -> Option<String> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let t = target.display().to_string();
    info.lines()
        .find(|l| l.split(' ').nth(4) == Some(t.as_str()))
        .and_then(|l| l.split(' ').nth(5).map(str::to_string))
}

#[test]
fn a_volume_is_mounted_with_its_flags_moved_and_unmounted() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    mkfs(&img, 32);
    let dev = LoopDevice::attach(&img, 0, 32 << 20).unwrap();
    let (first, second) = (dir.path().join("staging"), dir.path().join("final"));
    let opts = user_volume_flags();
    fs::mount(dev.path(), &first, FilesystemType::Ext4, opts).unwrap();
    let o = options_of(&first).expect("mounted");
    for flag in FLAGS {
        assert!(o.split(',').any(|f| f == flag), "{flag} missing in {o}");
    }
    std::fs::write(first.join("f"), b"kept").unwrap();
    fs::move_mount(&first, &second).unwrap();
    assert!(
        options_of(&first).is_none() && !first.exists(),
        "moved away"
    );
    assert_eq!(std::fs::read(second.join("f")).unwrap(), b"kept");
    fs::umount(&second).unwrap();
    assert!(options_of(&second).is_none(), "unmounted");
    let e = fs::umount(&second).unwrap_err();
    assert!(e.to_string().contains("umount"), "{e}");
}

/// systemd makes every mount shared (`/run` too), and the kernel refuses
/// to move a mount whose parent is shared: STATE is bound at its place
/// with its flags and unmounted at its staging point instead.
#[test]
fn a_mount_under_a_shared_mount_is_moved_with_its_flags() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("fs.img");
    mkfs(&img, 32);
    let dev = LoopDevice::attach(&img, 0, 32 << 20).unwrap();
    let shared = dir.path().join("run");
    std::fs::create_dir(&shared).unwrap();
    let sh = |args: &[&str]| assert!(Command::new("mount").args(args).status().unwrap().success());
    sh(&["-t", "tmpfs", "tmpfs", shared.to_str().unwrap()]);
    sh(&["--make-shared", shared.to_str().unwrap()]);
    let (first, second) = (shared.join("staging"), dir.path().join("final"));
    let opts = user_volume_flags();
    fs::mount(dev.path(), &first, FilesystemType::Ext4, opts).unwrap();
    std::fs::write(first.join("f"), b"kept").unwrap();
    let moved = fs::move_mount(&first, &second);
    let o = options_of(&second);
    let _ = fs::umount(&second);
    fs::umount(&shared).unwrap();
    moved.unwrap();
    let o = o.expect("mounted at its place");
    for flag in FLAGS {
        assert!(o.split(',').any(|f| f == flag), "{flag} missing in {o}");
    }
    assert!(options_of(&first).is_none(), "gone from its staging point");
}

#[test]
fn a_loop_device_maps_its_slice_of_the_image_with_autoclear_and_goes_when_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    let bytes: Vec<u8> = (0..(8u32 << 20)).map(|i| (i / 4096 % 251) as u8).collect();
    std::fs::write(&img, &bytes).unwrap();
    let (offset, len) = (1usize << 20, 3usize << 20);
    let dev = LoopDevice::attach(&img, offset as u64, len as u64).unwrap();
    let name = dev
        .path()
        .file_name()
        .unwrap()
        .to_string_lossy()
        .to_string();
    let sys = |f: &str| {
        std::fs::read_to_string(format!("/sys/block/{name}/loop/{f}"))
            .unwrap()
            .trim()
            .to_string()
    };
    assert_eq!(sys("offset"), offset.to_string());
    assert_eq!(sys("sizelimit"), len.to_string());
    assert_eq!(sys("autoclear"), "1");
    let seen = std::fs::read(dev.path()).unwrap();
    assert_eq!(seen.len(), len, "the device is the slice, not the file");
    assert!(seen == bytes[offset..offset + len]);
    let path = dev.path().to_path_buf();
    drop(dev);
    let backing = Path::new("/sys/block")
        .join(path.file_name().unwrap())
        .join("loop/backing_file");
    let still = std::fs::read_to_string(&backing)
        .map(|b| b.trim() == img.display().to_string())
        .unwrap_or(false);
    assert!(
        !still,
        "{} still maps the image after the drop",
        path.display()
    );
}
