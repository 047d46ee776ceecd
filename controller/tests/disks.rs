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
        msg.contains("`EPHEMERAL`") && msg.contains("a.img#2") && msg.contains("b.img#1"),
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
