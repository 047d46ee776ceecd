//! GPT discovery on images made by `sgdisk`, label conflicts, and META
//! through the CLI.

mod common;

use common::volctl;
use controller::node::disks::{by_label, partitions, DiskError, OpenPartition};
use std::path::Path;
use std::process::Command;

fn gpt(path: &Path, parts: &[(&str, &str)]) {
    std::fs::File::create(path)
        .unwrap()
        .set_len(128 << 20)
        .unwrap();
    let mut args = Vec::new();
    for (i, (label, size)) in parts.iter().enumerate() {
        args.push(format!("-n{}:0:{size}", i + 1));
        args.push(format!("-c{}:{label}", i + 1));
    }
    assert!(Command::new("sgdisk")
        .args(&args)
        .arg(path)
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap()
        .success());
}

#[test]
fn finds_partitions_by_label_with_offsets_sgdisk_agrees_on() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    gpt(&img, &[("META", "+1M"), ("STATE", "+40M"), ("u-data", "0")]);
    let parts = partitions(&img).unwrap();
    let labels: Vec<&str> = parts.iter().map(|p| p.label.as_str()).collect();
    assert_eq!(labels, vec!["META", "STATE", "u-data"]);
    let out = String::from_utf8(
        Command::new("sgdisk")
            .args(["-i", "2"])
            .arg(&img)
            .output()
            .unwrap()
            .stdout,
    )
    .unwrap();
    let first: u64 = out
        .lines()
        .find(|l| l.starts_with("First sector"))
        .unwrap()
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    let state = &by_label(std::slice::from_ref(&img)).unwrap()["STATE"];
    assert_eq!(state.offset, first * 512);
    assert_eq!(state.size, 40 << 20);
    assert_eq!(state.number, 2);
}

#[test]
fn a_label_on_two_partitions_is_an_error_naming_both() {
    let d = tempfile::tempdir().unwrap();
    let (a, b) = (d.path().join("a.img"), d.path().join("b.img"));
    gpt(&a, &[("STATE", "+10M"), ("EPHEMERAL", "+10M")]);
    gpt(&b, &[("EPHEMERAL", "+10M")]);
    let e = by_label(&[a.clone(), b.clone()]).unwrap_err();
    assert!(matches!(e, DiskError::DuplicateLabel { .. }));
    let msg = e.to_string();
    assert!(
        msg.contains("`EPHEMERAL`")
            && msg.contains("a.img partition 2")
            && msg.contains("b.img partition 1"),
        "{msg}"
    );
}

#[test]
fn a_disk_without_gpt_is_a_clear_error() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("blank.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(8 << 20)
        .unwrap();
    let e = partitions(&img).unwrap_err().to_string();
    assert!(
        e.contains("cannot read the GPT of") && e.contains("blank.img"),
        "{e}"
    );
}

#[test]
fn image_partitions_attach_as_loop_devices_and_detach_on_drop() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    gpt(&img, &[("META", "+1M"), ("STATE", "+40M")]);
    let state = by_label(std::slice::from_ref(&img)).unwrap()["STATE"].clone();
    let node = {
        let open = OpenPartition::open(&state).unwrap();
        let size = std::fs::metadata(&open.path).map(|_| ()).is_ok();
        assert!(size);
        let out = Command::new("blockdev")
            .arg("--getsize64")
            .arg(&open.path)
            .output()
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            (40u64 << 20).to_string()
        );
        open.path.clone()
    };
    let back = std::fs::read_to_string(format!(
        "/sys/block/{}/loop/backing_file",
        node.file_name().unwrap().to_string_lossy()
    ));
    assert!(back.is_err(), "loop device still attached after drop");
}

#[test]
fn meta_cli_round_trip_on_a_disk_image() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    gpt(&img, &[("META", "+1M"), ("STATE", "+40M")]);
    let disk = img.display().to_string();
    assert!(
        volctl(&["meta", "--disk", &disk, "set", "9", "{\"keys\":[]}"])
            .status
            .success()
    );
    let out = volctl(&["meta", "--disk", &disk, "list"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout), "9\t11 bytes\n");
    let out = volctl(&["meta", "--disk", &disk, "get", "9"]);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "{\"keys\":[]}");
    assert!(volctl(&["meta", "--disk", &disk, "delete", "9"])
        .status
        .success());
    let out = volctl(&["meta", "--disk", &disk, "get", "9"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no record with tag 9"));
}

/// CRC-32 (IEEE), as GPT headers and entry arrays carry it.
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 == 1 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Rewrites the GPT `sgdisk` made on `img` with 256-byte entries (64 of
/// them, the same array size), both copies, CRCs mended: valid per UEFI.
fn widen_entries(img: &Path) {
    let mut d = std::fs::read(img).unwrap();
    let last_lba = d.len() / 512 - 1;
    for header_lba in [1, last_lba] {
        let h = header_lba * 512;
        let u64_at = |d: &[u8], at: usize| u64::from_le_bytes(d[at..at + 8].try_into().unwrap());
        let array = usize::try_from(u64_at(&d, h + 72)).unwrap() * 512;
        let mut wide = vec![0u8; 64 * 256];
        for i in 0..64 {
            wide[i * 256..i * 256 + 128]
                .copy_from_slice(&d[array + i * 128..array + (i + 1) * 128]);
        }
        d[array..array + wide.len()].copy_from_slice(&wide);
        d[h + 80..h + 84].copy_from_slice(&64u32.to_le_bytes());
        d[h + 84..h + 88].copy_from_slice(&256u32.to_le_bytes());
        d[h + 88..h + 92].copy_from_slice(&crc32(&wide).to_le_bytes());
        d[h + 16..h + 20].copy_from_slice(&[0; 4]);
        let crc = crc32(&d[h..h + 92]);
        d[h + 16..h + 20].copy_from_slice(&crc.to_le_bytes());
    }
    std::fs::write(img, d).unwrap();
}

#[test]
fn a_gpt_with_256_byte_entries_is_reported_not_a_panic_and_left_alone() {
    let d = tempfile::tempdir().unwrap();
    let img = d.path().join("disk.img");
    gpt(&img, &[("META", "+1M"), ("data", "+8M")]);
    widen_entries(&img);
    // The real tool reads it: a table valid per UEFI.
    let dump = Command::new("sfdisk")
        .arg("--dump")
        .arg(&img)
        .output()
        .unwrap();
    let dump = String::from_utf8_lossy(&dump.stdout);
    assert!(
        dump.contains("name=\"META\"") && dump.contains("name=\"data\""),
        "{dump}"
    );
    let before = std::fs::read(&img).unwrap();

    let e = partitions(&img).unwrap_err();
    assert!(matches!(e, DiskError::Gpt { .. }), "{e}");
    assert!(e.to_string().contains("256-byte partition entries"), "{e}");
    let disks = volctl(&["disks", "--disk", img.to_str().unwrap()]);
    assert_ne!(
        disks.status.code(),
        Some(101),
        "panicked: {}",
        common::text(&disks.stderr)
    );
    let cfg = d.path().join("c.yaml");
    std::fs::write(&cfg, "apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning:\n  diskSelector:\n    match: \"!system_disk\"\n  minSize: 4MiB\n").unwrap();
    let prov = volctl(&[
        "provision",
        "--disk",
        img.to_str().unwrap(),
        "-f",
        cfg.to_str().unwrap(),
    ]);
    assert_ne!(
        prov.status.code(),
        Some(101),
        "panicked: {}",
        common::text(&prov.stderr)
    );
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing written");
    let why = "a GPT volctl does not read: its GPT has 256-byte partition entries";
    assert!(
        common::text(&disks.stdout).contains(why),
        "{}",
        common::text(&disks.stdout)
    );
    let err = common::text(&prov.stderr);
    assert!(
        err.contains(why) && err.contains("256-byte partition entries"),
        "{err}"
    );
    assert!(err.contains("does not write over it"), "{err}");
}
