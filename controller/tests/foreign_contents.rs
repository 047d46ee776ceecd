//! volctl formats only what is blank (issue 16, item 2): foreign contents
//! made with the real tools are named and left byte-identical; the remains
//! of a first format cut short are formatted again, an operator's volume
//! never is. A write-cutting fault injector (an `LD_PRELOAD` shim around
//! libc's write calls) cuts `volctl converge` inside libcryptsetup's own
//! writes during the first format, at every write in turn.

mod common;

use common::*;
use controller::converge::{ConvergeError, Mode};
use std::path::Path;
use std::process::Command;

const S0: &str = "{slot: 0, static: {passphrase: first-secret}}";
const N1: &str = "{slot: 1, nodeID: {}}";

fn sh(cmd: &str, img: &Path) {
    run_ok(
        Command::new("sh")
            .arg("-c")
            .arg(format!("{cmd} \"$IMG\""))
            .env("IMG", img),
    );
}

fn refused(img: &Image, expect: &str) {
    let before = sha256_file(&img.path);
    let e = run(&config(&[S0]), &img.path, &env(), Mode::Apply).unwrap_err();
    assert!(matches!(e, ConvergeError::NotBlank { .. }), "{e}");
    assert!(e.to_string().contains(expect), "{expect}: {e}");
    assert_eq!(sha256_file(&img.path), before, "{expect}: nothing written");
}

#[test]
fn filesystems_and_partition_tables_made_by_the_real_tools_are_named_and_kept() {
    let cases = [
        ("mkfs.minix", "minix filesystem"),
        ("mkfs.bfs", "BFS filesystem"),
        ("mkfs.exfat", "exFAT filesystem"),
        ("mkfs.ext4 -q -F", "ext2/3/4 filesystem"),
        ("echo 'label: dos' | sfdisk -q", "DOS/MBR partition table"),
        ("sgdisk -o", "GPT partition table"),
    ];
    for (cmd, expect) in cases {
        let img = image(40);
        sh(cmd, &img.path);
        refused(&img, expect);
    }
}

#[test]
fn a_cramfs_image_is_named_and_kept() {
    let img = image(40);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("f"), b"data").unwrap();
    let fs = dir.path().join("fs.cramfs");
    sh(&format!("mkfs.cramfs {} ", dir.path().display()), &fs);
    let bytes = std::fs::read(&fs).unwrap();
    let mut disk = std::fs::read(&img.path).unwrap();
    disk[..bytes.len()].copy_from_slice(&bytes);
    std::fs::write(&img.path, disk).unwrap();
    refused(&img, "cramfs filesystem");
}

#[test]
fn a_4kn_gpt_and_its_protective_mbr_are_kept() {
    // A 4Kn disk's GPT header sits at byte 4096, behind a protective MBR.
    let img = image(40);
    let mut disk = std::fs::read(&img.path).unwrap();
    disk[510..512].copy_from_slice(&[0x55, 0xaa]);
    std::fs::write(&img.path, &disk).unwrap();
    refused(&img, "DOS/MBR");
    disk[4096..4104].copy_from_slice(b"EFI PART");
    std::fs::write(&img.path, &disk).unwrap();
    refused(&img, "GPT partition table (4096-byte sectors)");
}

#[test]
fn unrecognised_data_at_either_end_is_kept() {
    for at in [300u64, (40 << 20) - 7] {
        let img = image(40);
        let mut disk = std::fs::read(&img.path).unwrap();
        disk[usize::try_from(at).unwrap()] = 0x42;
        std::fs::write(&img.path, &disk).unwrap();
        refused(&img, &format!("non-zero byte at offset {at}"));
    }
}

fn luks_format(img: &Path, subsystem: Option<&str>) {
    let mut args = vec![
        "luksFormat",
        "--batch-mode",
        "--type",
        "luks2",
        "--pbkdf",
        "pbkdf2",
        "--pbkdf-force-iterations",
        "1000",
    ];
    if let Some(s) = subsystem {
        args.extend(["--subsystem", s]);
    }
    cryptsetup(&args, img, b"whatever");
}

#[test]
fn a_volctl_header_without_tokens_and_unwritten_data_is_formatted_again() {
    let img = image(40);
    luks_format(&img.path, Some("volctl"));
    let o = apply(&config(&[S0, N1]), &img.path);
    assert!(o.formatted, "{o:?}");
    assert_eq!(slots(&img.path), vec![0, 1]);
    assert!(opens(&img.path, 0, b"first-secret"));
}

#[test]
fn an_operators_volume_or_one_holding_data_is_never_formatted_again() {
    // Not ours: no volctl subsystem.
    let img = image(40);
    luks_format(&img.path, None);
    let e = run(&config(&[S0]), &img.path, &env(), Mode::Apply).unwrap_err();
    assert!(matches!(e, ConvergeError::NoKeyOpens { .. }), "{e}");
    assert!(opens(&img.path, 0, b"whatever"));
    // Ours, but its data area was written.
    let img = image(40);
    luks_format(&img.path, Some("volctl"));
    let mut disk = std::fs::read(&img.path).unwrap();
    disk[(16 << 20) + 5] = 1;
    std::fs::write(&img.path, &disk).unwrap();
    let e = run(&config(&[S0]), &img.path, &env(), Mode::Apply).unwrap_err();
    assert!(matches!(e, ConvergeError::NoKeyOpens { .. }), "{e}");
    assert!(opens(&img.path, 0, b"whatever"));
}

#[test]
fn a_first_format_cut_inside_libcryptsetups_writes_is_finished_by_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let shim = cut_shim(dir.path());
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - {S0}\n    - {N1}\n"),
    )
    .unwrap();
    let converge = |img: &Path, cut: Option<u32>| {
        let mut c = Command::new(env!("CARGO_BIN_EXE_volctl"));
        c.args([
            "converge",
            "--volume",
            "EPHEMERAL",
            "--node-uuid",
            UUID,
            "--device",
        ])
        .arg(img)
        .arg("-f")
        .arg(&cfg);
        if let Some(n) = cut {
            c.env("LD_PRELOAD", &shim)
                .env("VOLCTL_CUT_PATH", img)
                .env("VOLCTL_CUT_AFTER", n.to_string());
        }
        c.output().unwrap()
    };
    let mut cuts = 0;
    for n in 0.. {
        let img = image(40);
        let out = converge(&img.path, Some(n));
        if out.status.success() {
            break; // the run needs fewer writes than n: every point was cut
        }
        assert_eq!(
            out.status.code(),
            Some(137),
            "write {n}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        cuts += 1;
        let again = converge(&img.path, None);
        assert!(
            again.status.success(),
            "after a cut at write {n}: {}",
            String::from_utf8_lossy(&again.stderr)
        );
        assert!(opens(&img.path, 0, b"first-secret"), "write {n}");
        assert!(opens(&img.path, 1, &node_pass()), "write {n}");
    }
    eprintln!("first format cut inside each of its {cuts} writes, each finished by the next run");
    assert!(cuts >= 4, "the injector cut {cuts} writes");
}
