//! Provisioning writes under a power cut at every write (docs/provisioning.md,
//! "Power cuts"): `volctl provision` making a GPT on a blank disk, adding a
//! partition beside one that holds data, and growing a partition after the
//! disk grew, each cut at every write it makes to the disk, whole and torn.
//! After each cut, checked outside volctl with `sfdisk` (which reads the
//! backup table when the primary is damaged): a partition that existed
//! before is still there, at the same place, with the same bytes. After the
//! next `volctl provision`: `sgdisk -v` finds no problem, every partition
//! is where the config wants it, the data is unchanged, and a third run has
//! nothing to do.

mod common;

use common::cuts::{self, Cut, Operation};
use common::text;
use sha2::{Digest, Sha256};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;
/// The bytes checked at a partition's start.
const CHECKED: usize = 4 << 20;

/// `data` (1–2 GiB, grows when `grow`), and `logs` (256 MiB) when asked.
fn config(dir: &Path, name: &str, grow: bool, logs: bool) -> PathBuf {
    let p = dir.join(name);
    let size = if grow {
        "minSize: 1GiB\n  grow: true"
    } else {
        "minSize: 1GiB\n  maxSize: 2GiB"
    };
    let mut y = format!("apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning:\n  diskSelector:\n    match: 'true'\n  {size}\n");
    if logs {
        y.push_str("---\napiVersion: v1alpha1\nkind: UserVolumeConfig\nname: logs\nprovisioning:\n  diskSelector:\n    match: 'true'\n  minSize: 256MiB\n  maxSize: 256MiB\n");
    }
    std::fs::write(&p, y).unwrap();
    p
}

fn provision(img: &Path, cfg: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_volctl"));
    c.args(["provision", "--disk"]).arg(img).arg("-f").arg(cfg);
    c
}

/// A partition as `sfdisk --json` reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Part {
    name: String,
    start: u64,
    size: u64,
}

/// The partitions `sfdisk` reads (primary table, or the backup when the
/// primary is damaged).
fn partitions(img: &Path) -> Vec<Part> {
    let out = Command::new("sfdisk")
        .arg("--json")
        .arg(img)
        .output()
        .unwrap();
    if !out.status.success() {
        return vec![];
    }
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    j["partitiontable"]["partitions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|p| Part {
            name: p["name"].as_str().unwrap_or_default().to_string(),
            start: p["start"].as_u64().unwrap(),
            size: p["size"].as_u64().unwrap(),
        })
        .collect()
}

fn named<'a>(parts: &'a [Part], name: &str) -> Option<&'a Part> {
    parts.iter().find(|p| p.name == name)
}

/// SHA-256 of the first 4 MiB of `part`.
fn contents(img: &Path, part: &Part) -> Vec<u8> {
    let mut buf = vec![0u8; CHECKED];
    let f = std::fs::File::open(img).unwrap();
    f.read_exact_at(&mut buf, part.start * 512).unwrap();
    Sha256::digest(&buf).to_vec()
}

/// A disk of `size` whose `u-data` partition (made by `volctl provision`
/// with `cfg`) holds 4 MiB of patterned bytes; returns it, the partition
/// and its fingerprint.
fn disk_with_data(dir: &Path, size: u64, cfg: &Path) -> (PathBuf, Part, Vec<u8>) {
    let img = dir.join("base.img");
    std::fs::File::create(&img).unwrap().set_len(size).unwrap();
    let out = provision(&img, cfg).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let part = named(&partitions(&img), "u-data").unwrap().clone();
    let bytes = common::patterned(CHECKED);
    let f = std::fs::OpenOptions::new().write(true).open(&img).unwrap();
    f.write_all_at(&bytes, part.start * 512).unwrap();
    let sum = contents(&img, &part);
    (img, part, sum)
}

/// Runs the next `volctl provision` and a third one; checks the table with
/// `sgdisk -v` and returns the partitions.
fn next_provision(img: &Path, cfg: &Path) -> Vec<Part> {
    let out = provision(img, cfg).output().unwrap();
    assert!(out.status.success(), "the next run: {}", text(&out.stderr));
    let v = Command::new("sgdisk").arg("-v").arg(img).output().unwrap();
    assert!(
        text(&v.stdout).contains("No problems found"),
        "sgdisk -v after the next run: {}",
        text(&v.stdout)
    );
    let again = provision(img, cfg).output().unwrap();
    assert!(
        text(&again.stdout).contains("nothing to do"),
        "a third run: {}",
        text(&again.stdout)
    );
    partitions(img)
}

fn sweep(
    name: &str,
    base: &Path,
    cfg: &Path,
    after_cut: &(dyn Fn(&Path) + Sync),
    next: &(dyn Fn(&Path) + Sync),
) {
    let command = |img: &Path| provision(img, cfg);
    let after = |img: &Path, _: &Path, _: Cut| after_cut(img);
    let then = |img: &Path, _: &Path, _: Cut| next(img);
    let op = Operation::every_write(name, base, &command, &after, &then);
    let report = cuts::sweep_alone(&op);
    // The backup array and header, the protective MBR, the primary
    // header and array.
    assert!(report.writes >= 4, "{report:?}");
}

#[test]
fn a_first_table_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(4 * GIB)
        .unwrap();
    let cfg = config(dir.path(), "data.yaml", false, false);
    let next = |img: &Path| {
        let parts = next_provision(img, &cfg);
        let data = named(&parts, "u-data").expect("u-data after the next run");
        assert_eq!(data.size * 512, 2 * GIB, "{parts:?}");
    };
    sweep("a first GPT (provision)", &blank, &cfg, &|_| {}, &next);
}

#[test]
fn a_partition_added_beside_data_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let first = config(dir.path(), "data.yaml", false, false);
    let (base, data, sum) = disk_with_data(dir.path(), 4 * GIB, &first);
    let cfg = config(dir.path(), "both.yaml", false, true);
    let still_there = |img: &Path| {
        let parts = partitions(img);
        assert_eq!(named(&parts, "u-data"), Some(&data), "{parts:?}");
        assert_eq!(contents(img, &data), sum, "u-data's bytes changed");
    };
    let next = |img: &Path| {
        let parts = next_provision(img, &cfg);
        assert_eq!(named(&parts, "u-data"), Some(&data), "{parts:?}");
        let logs = named(&parts, "u-logs").expect("u-logs after the next run");
        assert_eq!(logs.size * 512, 256 * MIB, "{parts:?}");
        assert_eq!(contents(img, &data), sum, "u-data's bytes changed");
    };
    sweep(
        "a partition added (provision)",
        &base,
        &cfg,
        &still_there,
        &next,
    );
}

#[test]
fn a_partition_grown_after_its_disk_grew_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "grow.yaml", true, false);
    let (base, data, sum) = disk_with_data(dir.path(), 2 * GIB, &cfg);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&base)
        .unwrap()
        .set_len(3 * GIB)
        .unwrap();
    let in_place = |img: &Path| {
        let parts = partitions(img);
        let now = named(&parts, "u-data").expect("u-data after the cut");
        assert_eq!(now.start, data.start, "{parts:?}");
        assert!(now.size >= data.size, "{parts:?}");
        assert_eq!(contents(img, &data), sum, "u-data's bytes changed");
    };
    let next = |img: &Path| {
        let parts = next_provision(img, &cfg);
        let now = named(&parts, "u-data").expect("u-data after the next run");
        assert_eq!(now.start, data.start, "{parts:?}");
        assert!(now.size > data.size, "not grown: {parts:?}");
        assert_eq!(contents(img, &data), sum, "u-data's bytes changed");
    };
    sweep(
        "a partition grown (provision)",
        &base,
        &cfg,
        &in_place,
        &next,
    );
}
