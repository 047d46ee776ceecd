//! `volctl provision` and `volctl disks` on sparse image files: the
//! selector picks the disk, `sgdisk` reads the result, a second run writes
//! nothing, and a volume that fits nowhere names every disk and why.

mod common;

use common::{text, volctl};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;

const GIB: u64 = 1 << 30;

fn sparse(dir: &Path, name: &str, size: u64) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().set_len(size).unwrap();
    p
}

/// SHA-256 over the data extents of a sparse file and their offsets (holes
/// read as zeros, so equal fingerprints mean equal bytes), without reading
/// gigabytes of holes.
fn sha(p: &Path) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    use std::os::unix::io::AsRawFd;
    let f = std::fs::File::open(p).unwrap();
    let len = f.metadata().unwrap().len();
    let fd = f.as_raw_fd();
    let mut h = Sha256::new();
    h.update(len.to_le_bytes());
    let mut at: i64 = 0;
    loop {
        // SAFETY: a valid descriptor; lseek has no memory effects.
        let data = unsafe { libc::lseek(fd, at, libc::SEEK_DATA) };
        if data < 0 {
            break; // ENXIO: no data after `at`
        }
        // SAFETY: as above.
        let hole = unsafe { libc::lseek(fd, data, libc::SEEK_HOLE) };
        let mut buf = vec![0u8; usize::try_from(hole - data).unwrap()];
        f.read_exact_at(&mut buf, u64::try_from(data).unwrap())
            .unwrap();
        if buf.iter().any(|&b| b != 0) {
            h.update(data.to_le_bytes());
            h.update(&buf);
        }
        at = hole;
    }
    h.finalize().to_vec()
}

fn config(dir: &Path, selector: &str) -> String {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning:\n  diskSelector:\n    match: {selector}\n  minSize: 1GiB\n  maxSize: 2GiB\n"),
    )
    .unwrap();
    p.display().to_string()
}

/// A fresh all-zero image of `size`, to compare fingerprints with.
fn sparse_zero(dir: &Path, size: u64) -> PathBuf {
    sparse(dir, "zero.img", size)
}

fn sgdisk_print(img: &Path) -> String {
    text(
        &Command::new("sgdisk")
            .arg("-p")
            .arg(img)
            .output()
            .unwrap()
            .stdout,
    )
}

#[test]
fn the_selector_picks_the_disk_and_a_second_run_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let small = sparse(dir.path(), "small.img", GIB);
    let big = sparse(dir.path(), "big.img", 8 * GIB);
    let cfg = config(dir.path(), "disk.size > 4u * GiB");
    let (s, b) = (small.display().to_string(), big.display().to_string());
    let small_before = sha(&small);

    let plan = |args: &[&str]| {
        volctl(&[&["provision", "--disk", &s, "--disk", &b, "-f", &cfg], args].concat())
    };
    assert_eq!(
        plan(&["--dry-run", "--detailed-exitcode"]).status.code(),
        Some(2)
    );
    assert_eq!(
        sha(&big),
        sha(&sparse_zero(dir.path(), 8 * GIB)),
        "a dry run writes nothing"
    );
    let out = plan(&[]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).contains("did create partition u-data"),
        "{}",
        text(&out.stdout)
    );
    let table = sgdisk_print(&big);
    assert!(
        table.lines().any(|l| l.contains("u-data")
            && l.contains("2.0 GiB")
            && l.trim_start().starts_with("1 ")),
        "{table}"
    );
    assert_eq!(
        sha(&small),
        small_before,
        "the unselected disk is untouched"
    );

    let before = (sha(&small), sha(&big));
    let again = volctl(&["provision", "--disk", &s, "--disk", &b, "-f", &cfg]);
    assert!(again.status.success());
    assert!(text(&again.stdout).contains("nothing to do"));
    assert_eq!(
        plan(&["--dry-run", "--detailed-exitcode"]).status.code(),
        Some(0)
    );
    assert_eq!(
        (sha(&small), sha(&big)),
        before,
        "a second run writes nothing"
    );

    let disks = volctl(&["disks", "--disk", &s, "--disk", &b, "-o", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&disks.stdout).unwrap();
    assert_eq!(v[0]["dev_path"], b, "disks are listed in path order");
    assert_eq!(v[0]["table"]["partitions"][0]["label"], "u-data");
    assert_eq!(v[1]["table"], serde_json::Value::Null);
}

#[test]
fn a_volume_that_fits_nowhere_names_each_disk_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let small = sparse(dir.path(), "small.img", GIB);
    let foreign = sparse(dir.path(), "foreign.img", 4 * GIB);
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&foreign)
        .status()
        .unwrap()
        .success());
    let cfg = config(dir.path(), "disk.size > 512u * MiB");
    let before = (sha(&small), sha(&foreign));
    let out = volctl(&[
        "provision",
        "--disk",
        &small.display().to_string(),
        "--disk",
        &foreign.display().to_string(),
        "-f",
        &cfg,
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("no disk has room for partition u-data"),
        "{err}"
    );
    assert!(
        err.contains(
            "foreign.img: no GPT volctl can use, and it is not blank (ext2/3/4 filesystem"
        ),
        "{err}"
    );
    assert!(
        err.contains("small.img: its largest free range is 1022 MiB, less than minSize 1024 MiB"),
        "{err}"
    );
    assert_eq!((sha(&small), sha(&foreign)), before);
}

#[test]
fn a_bad_selector_is_a_config_error_with_its_line_and_column() {
    let dir = tempfile::tempdir().unwrap();
    let disk = sparse(dir.path(), "d.img", GIB);
    let cfg = config(dir.path(), "disk.size > 4");
    let out = volctl(&[
        "provision",
        "--disk",
        &disk.display().to_string(),
        "-f",
        &cfg,
        "--dry-run",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("config.yaml:6: error: document 1 (UserVolumeConfig \"data\"): provisioning.diskSelector.match: disk selector is invalid: ERROR: <input>:1:11: found no matching overload for '_>_' applied to '(uint, int)'"), "{err}");
}

#[test]
fn grow_follows_a_disk_that_grew() {
    let dir = tempfile::tempdir().unwrap();
    let disk = sparse(dir.path(), "d.img", 4 * GIB);
    let cfg = dir.path().join("grow.yaml");
    std::fs::write(
        &cfg,
        "apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning:\n  diskSelector:\n    match: 'true'\n  minSize: 1GiB\n  grow: true\n",
    )
    .unwrap();
    let (d, c) = (disk.display().to_string(), cfg.display().to_string());
    let run = || {
        let out = volctl(&["provision", "--disk", &d, "-f", &c]);
        assert!(out.status.success(), "{}", text(&out.stderr));
        text(&out.stdout)
    };
    assert!(run().contains("did create partition u-data on"));
    assert!(
        sgdisk_print(&disk).contains("4.0 GiB"),
        "{}",
        sgdisk_print(&disk)
    );
    assert!(run().contains("nothing to do"));

    // The disk grows (a bigger virtual disk, a cloned image): the next run
    // moves the backup GPT to the new end and grows the partition.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk)
        .unwrap()
        .set_len(6 * GIB)
        .unwrap();
    assert!(run().contains("did grow partition u-data on"));
    let table = sgdisk_print(&disk);
    assert!(
        table
            .lines()
            .any(|l| l.contains("u-data") && l.contains("6.0 GiB")),
        "{table}"
    );
    let v = Command::new("sgdisk")
        .arg("-v")
        .arg(&disk)
        .output()
        .unwrap();
    assert!(
        text(&v.stdout).contains("No problems found"),
        "{}",
        text(&v.stdout)
    );
    assert!(run().contains("nothing to do"));
}
