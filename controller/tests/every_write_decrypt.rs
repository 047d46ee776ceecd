//! Decryption in place proven at every write (docs/migration.md,
//! "Decryption in place"): `volctl disable-encryption` is cut at every
//! write it makes to the device and to its header file (one sequence: the
//! header exported, the device's header wiped, the decryption recorded,
//! every step of the data and of its progress in the file), the cut write
//! landing whole and landing half. After each cut, `cryptsetup` opens the
//! volume by the configured passphrase — with the device's header, or with
//! the header file once that is the only copy — or the device already
//! holds the plaintext filesystem; after the same command runs again, the
//! device holds ext4 from its first byte, `e2fsck -fn` passes, every file
//! comes back with its SHA-256, and the header file is gone.

mod common;

use common::cuts::{self, Cut, Operation, Points};
use common::ext4fs::{self, Sums};
use common::{cryptsetup_with_pass, is_luks, text, UUID};
use std::path::{Path, PathBuf};
use std::process::Command;

const PASS: &[u8] = b"day-to-day-pass";
const VOLUME: &str = "EPHEMERAL";

/// The folder the header file is kept in, beside the image.
fn header_dir(img: &Path) -> PathBuf {
    img.parent().unwrap().join("headers")
}

fn header_file(img: &Path) -> PathBuf {
    header_dir(img).join(VOLUME).join("luks2-header")
}

/// `volctl VERB --volume EPHEMERAL --device IMG -f CFG` in a mount
/// namespace of its own; writes to the header folder are cut too.
fn volctl(args: &[&str], img: &Path, cfg: &Path) -> Command {
    volctl_on(VOLUME, args, img, cfg)
}

fn volctl_on(volume: &str, args: &[&str], img: &Path, cfg: &Path) -> Command {
    let mut c = cuts::isolated(Path::new(env!("CARGO_BIN_EXE_volctl")));
    c.args(args)
        .args(["--volume", volume, "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .env("VOLCTL_NODE_UUID", UUID)
        .env_remove("VOLCTL_STATE_SALT_FILE");
    c
}

fn disable(img: &Path, cfg: &Path) -> Command {
    let dir = header_dir(img);
    std::fs::create_dir_all(&dir).unwrap();
    let mut c = volctl(&["disable-encryption"], img, cfg);
    c.arg("--header-dir")
        .arg(&dir)
        .env("VOLCTL_CUT_FOLDER", dir.canonicalize().unwrap());
    c
}

/// A 64 MiB ext4 image with files, encrypted in place by `volctl
/// converge` (its data 16 MiB into the device).
fn encrypted_image(dir: &Path) -> (PathBuf, PathBuf, Sums) {
    let (img, want) = ext4fs::ext4_image(dir, 64, 32, 3);
    let cfg = ext4fs::in_place_config(dir);
    let out = volctl(&["converge"], &img, &cfg).output().unwrap();
    assert!(out.status.success(), "converge: {}", text(&out.stderr));
    assert!(is_luks(&img));
    (img, cfg, want)
}

/// Whether `cryptsetup` opens the volume by the passphrase of slot 0,
/// with the header file when there is one (`--header`).
fn opens_by(img: &Path, header: Option<&Path>) -> bool {
    let mut args = vec!["open", "--test-passphrase"];
    let h = header.map(|h| h.display().to_string());
    if let Some(h) = &h {
        args.extend(["--header", h]);
    }
    args.extend(["--key-file", "-", "--key-slot", "0"]);
    cryptsetup_with_pass(&args, img, &[], PASS).status.success()
}

/// Right after a cut: the key opens it by the device's header (nothing
/// moved yet), or by the header file, or it is done but for removing the
/// file (the device holds the plaintext).
fn a_key_opens_it(img: &Path, scratch: &Path, want: &Sums) {
    let file = header_file(img);
    let whole_file = file.exists() && is_luks(&file);
    if is_luks(img) {
        assert!(opens_by(img, None), "the device's header does not open");
    } else if whole_file && opens_by(img, Some(&file)) {
    } else {
        assert!(
            !whole_file || all_plaintext(&file),
            "the header file does not open it, and the decryption it records is not done"
        );
        ext4fs::assert_tree(img, scratch, want);
    }
}

/// Whether the header file records every byte decrypted (its segments in
/// use, backups aside: one linear at offset 0), as `cryptsetup` reads it.
fn all_plaintext(file: &Path) -> bool {
    let j = common::dump(file);
    let in_use: Vec<&serde_json::Value> = j["segments"]
        .as_object()
        .unwrap()
        .values()
        .filter(|s| !s["flags"].to_string().contains("backup-"))
        .collect();
    matches!(in_use[..], [s] if s["type"] == "linear" && s["offset"] == "0")
}

/// After the same command, uncut: plaintext ext4 from the first byte,
/// every file, no header file left.
fn decrypted(img: &Path, cfg: &Path, scratch: &Path, want: &Sums) {
    let out = disable(img, cfg).output().unwrap();
    assert!(
        out.status.success(),
        "disable-encryption: {}",
        text(&out.stderr)
    );
    assert!(!is_luks(img), "still LUKS");
    assert!(!header_file(img).exists(), "the header file is left");
    ext4fs::assert_tree(img, scratch, want);
}

#[test]
fn decryption_in_place_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let (base, cfg, want) = encrypted_image(dir.path());
    let command = |img: &Path| disable(img, &cfg);
    let after_cut = |img: &Path, scratch: &Path, _: Cut| a_key_opens_it(img, scratch, &want);
    let next = |img: &Path, scratch: &Path, _: Cut| decrypted(img, &cfg, scratch, &want);
    let mut op = Operation::every_write(
        "decryption in place (disable-encryption)",
        &base,
        &command,
        &after_cut,
        &next,
    );
    op.points = Points::Every;
    let report = cuts::sweep_alone(&op);
    // The exported header, the wipe, the record, three 16 MiB steps.
    assert!(report.writes >= 6, "{report:?}");
}

#[test]
fn an_uncut_decryption_costs_two_kdf_runs_and_a_dry_run_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (img, cfg, want) = encrypted_image(dir.path());
    let before = std::fs::read(&img).unwrap();
    let out = disable(&img, &cfg)
        .args(["--dry-run", "-o", "json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(plan["applied"], false);
    assert_eq!(
        plan["steps"],
        serde_json::json!(["export", "wipe", "record", "run", "finish"])
    );
    assert_eq!(plan["data_mib"], 48);
    assert!(std::fs::read(&img).unwrap() == before, "a dry run wrote");
    assert!(!header_file(&img).exists());

    let out = disable(&img, &cfg).args(["-o", "json"]).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let done: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(done["applied"], true);
    // One to find the key that opens it, one for libcryptsetup to record
    // and run the decryption.
    assert_eq!(done["kdf_runs"], 2, "{done}");
    ext4fs::assert_tree(&img, dir.path(), &want);
    assert!(!header_file(&img).exists());
}

#[test]
fn state_and_a_stale_header_file_are_refused_with_nothing_written() {
    let dir = tempfile::tempdir().unwrap();
    let (img, cfg, _) = encrypted_image(dir.path());
    let before = std::fs::read(&img).unwrap();
    // A header file of another volume where this one's would be.
    let other = dir.path().join("other.img");
    std::fs::copy(&img, &other).unwrap();
    run(Command::new("cryptsetup")
        .args([
            "luksUUID",
            "--batch-mode",
            "--uuid",
            "0b6c9b22-6d5a-4b43-9e0e-1b0c2f3a4d5e",
        ])
        .arg(&other));
    std::fs::create_dir_all(header_dir(&img).join(VOLUME)).unwrap();
    run(Command::new("cryptsetup")
        .args(["luksHeaderBackup", "--header-backup-file"])
        .arg(header_file(&img))
        .arg(&other));
    let out = disable(&img, &cfg).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("the header file holds the header of another volume (UUID 0b6c9b22-6d5a-4b43-9e0e-1b0c2f3a4d5e"),
        "{err}"
    );
    assert!(std::fs::read(&img).unwrap() == before, "it wrote");

    let state = dir.path().join("state.yaml");
    std::fs::write(
        &state,
        std::fs::read_to_string(&cfg)
            .unwrap()
            .replace("name: EPHEMERAL", "name: STATE"),
    )
    .unwrap();
    let out = volctl_on("STATE", &["disable-encryption"], &img, &state)
        .arg("--header-dir")
        .arg(header_dir(&img))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("STATE is not decrypted in place"),
        "{}",
        text(&out.stderr)
    );
    assert!(std::fs::read(&img).unwrap() == before, "it wrote");
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(out.status.success(), "{cmd:?}: {}", text(&out.stderr));
}
