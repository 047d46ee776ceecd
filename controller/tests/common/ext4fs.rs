//! Filesystems with known contents, and the check of them outside volctl:
//! an ext4 made with `mkfs.ext4 -d` from a tree of files of known SHA-256;
//! after encryption, the data area decrypted with the volume key
//! (`cryptsetup luksDump --dump-volume-key`) must pass `e2fsck -fn` and
//! give the same files back through `debugfs rdump`.

use super::text;
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where the data of a volume volctl encrypted in place starts (its
/// header's size, libcryptsetup's default data offset).
pub const SHIFT: usize = 16 << 20;

/// An EPHEMERAL config in `dir` asking for in-place encryption with a
/// static key in slot 0 (`day-to-day-pass`) and a nodeID key in slot 1.
pub fn in_place_config(dir: &Path) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  inPlace: true\n  {}\n  keys:\n    - slot: 0\n      static: {{passphrase: day-to-day-pass}}\n    - slot: 1\n      nodeID: {{}}\n", super::PBKDF),
    )
    .unwrap();
    p
}

/// SHA-256 of each file, by path relative to the tree's root.
pub type Sums = BTreeMap<String, String>;

/// A tree of files under `dir/tree`: `big` random files of about 3 MiB, a
/// sparse 40 MiB one, a file at the end of a 24-deep path.
pub fn tree(dir: &Path, big: usize) -> Sums {
    let root = dir.join("tree");
    let deep = (0..24).fold(root.clone(), |p, i| p.join(format!("d{i}")));
    std::fs::create_dir_all(&deep).unwrap();
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut bytes = |n: usize| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed.to_le_bytes()[0]
            })
            .collect()
    };
    for i in 0..big {
        std::fs::write(root.join(format!("big{i}")), bytes((3 << 20) + i * 4097)).unwrap();
    }
    std::fs::write(deep.join("leaf"), bytes(12345)).unwrap();
    let sparse = std::fs::File::create(root.join("sparse")).unwrap();
    sparse.set_len(40 << 20).unwrap();
    use std::os::unix::fs::FileExt;
    sparse.write_all_at(&bytes(4096), 20 << 20).unwrap();
    sparse.write_all_at(b"end", (40 << 20) - 3).unwrap();
    sums(&root)
}

/// SHA-256 of every file under `root`, by relative path.
pub fn sums(root: &Path) -> Sums {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                out.insert(rel, hex(&Sha256::digest(std::fs::read(&p).unwrap())));
            }
        }
    }
    out
}

/// Lower-case hex of `b`.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// An ext4 image of `mib` MiB whose filesystem is `fs_mib` MiB, holding a
/// tree with `big` large files; returns (image, sums).
pub fn ext4_image(dir: &Path, mib: u64, fs_mib: u64, big: usize) -> (PathBuf, Sums) {
    let sums = tree(dir, big);
    let img = dir.join("disk.img");
    let tree = dir.join("tree").display().to_string();
    let mkfs = ["mkfs.ext4", "-q", "-F", "-b", "4096", "-d", &tree];
    mkfs_image(&img, mib, &mkfs, &[&format!("{fs_mib}M")]);
    (img, sums)
}

/// An image of `mib` MiB made by `mkfs` (the tool and its flags), with
/// `after` following the image's path.
pub fn mkfs_image(img: &Path, mib: u64, mkfs: &[&str], after: &[&str]) {
    std::fs::File::create(img)
        .unwrap()
        .set_len(mib << 20)
        .unwrap();
    let out = Command::new(mkfs[0])
        .args(&mkfs[1..])
        .arg(img)
        .args(after)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
}

/// The plaintext of the data area of `img` (decrypted with the
/// aes-xts-plain64 volume key `vk`), written to `out`.
pub fn decrypt_with(img: &Path, vk: &[u8], out: &Path) {
    let mut data = std::fs::read(img).unwrap().split_off(SHIFT);
    super::xts_decrypt(&mut data, vk);
    std::fs::write(out, data).unwrap();
}

/// Whether `e2fsck -fn` finds `fs` clean; its output otherwise.
pub fn fsck(fs: &Path) -> Result<(), String> {
    let out = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(fs)
        .output()
        .unwrap();
    if out.status.success() {
        Ok(())
    } else {
        Err(format!("{}{}", text(&out.stdout), text(&out.stderr)))
    }
}

/// `e2fsck -fn` passes on the filesystem image `fs` and `debugfs rdump`
/// yields exactly the files of `want` (in `scratch`).
pub fn assert_tree(fs: &Path, scratch: &Path, want: &Sums) {
    if let Err(e) = fsck(fs) {
        panic!("e2fsck -fn: {e}");
    }
    let out = scratch.join("out");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let dump = Command::new("debugfs")
        .arg("-R")
        .arg(format!("rdump / {}", out.display()))
        .arg(fs)
        .output()
        .unwrap();
    assert!(dump.status.success(), "{}", text(&dump.stderr));
    let mut got = sums(&out);
    got.retain(|k, _| !k.starts_with("lost+found"));
    assert_eq!(&got, want, "the files read back");
}

/// The encrypted volume `img`, opened outside volctl by the passphrase
/// `pass` of `slot`: its volume key decrypts a filesystem holding `want`.
pub fn assert_encrypted_tree(img: &Path, slot: u32, pass: &[u8], scratch: &Path, want: &Sums) {
    let vk = super::hex_bytes(&super::volume_key(img, slot, pass));
    let plain = scratch.join("plain.img");
    decrypt_with(img, &vk, &plain);
    assert_tree(&plain, scratch, want);
    let _ = std::fs::remove_file(&plain);
}

/// Mounts the filesystem `fs` (an image file, through a loop device, or a
/// block device) at `scratch/mnt` with `options`, runs `f` on the mount
/// point, and unmounts it.
fn with_mounted<T>(fs: &Path, scratch: &Path, options: &str, f: impl FnOnce(&Path) -> T) -> T {
    let at = scratch.join("mnt");
    std::fs::create_dir_all(&at).unwrap();
    let options = if fs.is_file() {
        format!("loop,{options}")
    } else {
        options.to_string()
    };
    let mount = Command::new("mount")
        .args(["-o", &options])
        .arg(fs)
        .arg(&at)
        .output()
        .unwrap();
    assert!(mount.status.success(), "mount: {}", text(&mount.stderr));
    let out = f(&at);
    let _ = Command::new("umount").arg(&at).status();
    out
}

/// Copies the tree `tree` into the filesystem `fs` (mounted for it): how
/// a filesystem without a populate option (XFS) gets its files.
pub fn copy_in(fs: &Path, tree: &Path, scratch: &Path) {
    let copied = with_mounted(fs, scratch, "rw", |at| {
        Command::new("cp")
            .arg("-a")
            .arg(format!("{}/.", tree.display()))
            .arg(at)
            .status()
            .unwrap()
    });
    assert!(copied.success(), "cp -a into {}", fs.display());
}

/// The files of the filesystem `fs`, read through a read-only mount.
pub fn sums_mounted(fs: &Path, scratch: &Path) -> Sums {
    with_mounted(fs, scratch, "ro", sums)
}
