//! In-place encryption on image files (no device-mapper): an ext4 made
//! with `mkfs.ext4 -d` holding files of known SHA-256 (several MiB, a
//! sparse one, a deep tree) is encrypted by `volctl converge` with
//! `inPlace: true`; `cryptsetup luksDump` shows the configured keys; the
//! data area, decrypted with the volume key, passes `e2fsck -fn` and yields
//! the same files. Killed (SIGKILL) at random points, each rerun resumes and
//! the end is the same. xfs and a filesystem without room are refused with
//! the image byte-identical; a reencryption someone else started, or one
//! with a forged proof, is refused. A rotated volume key no longer
//! decrypts the data, every configured key still opens the volume, and a
//! cut rotation resumes.

mod common;

use common::ext4fs::{self, decrypt_with, hex, mkfs_image, Sums};
use common::{opens, text, volctl, UUID};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

fn config(dir: &Path) -> PathBuf {
    ext4fs::in_place_config(dir)
}

/// An ext4 image of `mib` MiB whose filesystem is `fs_mib` MiB, holding
/// six files of about 3 MiB, a sparse one and a deep path.
fn ext4_image(dir: &Path, mib: u64, fs_mib: u64) -> (PathBuf, Sums) {
    ext4fs::ext4_image(dir, mib, fs_mib, 6)
}

fn converge(img: &Path, cfg: &Path, mode: &str) -> std::process::Output {
    on_volume(mode, img, cfg, &["-o", "json"])
}

/// `volctl VERB` on EPHEMERAL on `img` with the config `cfg`.
fn on_volume(verb: &str, img: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        verb,
        "--volume",
        "EPHEMERAL",
        "--device",
        img.to_str().unwrap(),
        "-f",
        cfg.to_str().unwrap(),
    ];
    args.extend_from_slice(extra);
    volctl(&args)
}

/// The volume key, as `cryptsetup luksDump --dump-volume-key` shows it.
fn volume_key(img: &Path) -> Vec<u8> {
    common::hex_bytes(&common::volume_key(img, 0, b"day-to-day-pass"))
}

/// e2fsck -fn passes on the decrypted data and debugfs yields the files.
fn assert_files(img: &Path, dir: &Path, want: &Sums) {
    ext4fs::assert_encrypted_tree(img, 0, b"day-to-day-pass", dir, want);
}

fn luks_json(img: &Path) -> serde_json::Value {
    let o = Command::new("cryptsetup")
        .args(["luksDump", "--dump-json-metadata"])
        .arg(img)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn an_ext4_image_is_encrypted_in_place_and_its_files_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    // The filesystem fills the image: it must shrink by 32 MiB first.
    let (img, want) = ext4_image(dir.path(), 128, 128);
    let cfg = config(dir.path());
    let before = std::fs::read(&img).unwrap();

    let plan = converge(&img, &cfg, "plan");
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let p: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let action = &p["plan"]["actions"][0];
    assert_eq!(action["action"], "encrypt-in-place", "{p}");
    assert_eq!(action["shrink_mib"], 32);
    assert_eq!(action["data_mib"], 96);
    assert!(action["eta_seconds"].as_u64().is_some(), "{p}");
    assert_eq!(std::fs::read(&img).unwrap(), before, "plan writes nothing");

    let run = converge(&img, &cfg, "converge");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let o: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert!(o["encrypted"]["mib"].as_u64().unwrap() >= 96, "{o}");
    // Two keys, the start and the run: four KDF runs.
    assert_eq!(o["kdf_runs"], 4, "{o}");
    assert!(text(&run.stderr).contains("encrypting in place 100%"));

    let j = luks_json(&img);
    let slots: Vec<&String> = j["keyslots"].as_object().unwrap().keys().collect();
    assert_eq!(slots, ["0", "1"], "{j}");
    assert!(j["config"].get("requirements").is_none(), "{j}");
    assert!(!j["tokens"].to_string().contains("volctl-reencrypt"), "{j}");
    assert_eq!(j["segments"].as_object().unwrap().len(), 1);
    assert!(opens(&img, 0, b"day-to-day-pass"));
    assert_files(&img, dir.path(), &want);

    // Converged now: one KDF run, nothing to do.
    let again = converge(&img, &cfg, "converge");
    let o: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(o["plan"]["actions"], serde_json::json!([]), "{o}");
    assert_eq!(o["kdf_runs"], 1);
}

/// A tiny xorshift, seeded from the clock (printed, to replay a failure).
fn delays(n: usize, max_ms: u64) -> Vec<u64> {
    let mut s: u64 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
        .into();
    s |= 1;
    eprintln!("kill delays seed {s}");
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s % max_ms
        })
        .collect()
}

/// Starts `volctl converge`, kills it (SIGKILL) `ms` after it reports its
/// first step of encryption (or, with `during_start`, `ms` after it
/// starts); returns whether it was still running then.
fn kill_run(img: &Path, cfg: &Path, ms: u64, during_start: bool) -> bool {
    kill_verb(
        "converge",
        "encrypting in place",
        img,
        cfg,
        ms,
        during_start,
    )
}

/// The same for `volctl VERB`, its steps reported by lines with `marker`.
fn kill_verb(
    verb: &str,
    marker: &str,
    img: &Path,
    cfg: &Path,
    ms: u64,
    during_start: bool,
) -> bool {
    use std::io::BufRead;
    let marker = marker.to_string();
    let mut child = Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args([verb, "--volume", "EPHEMERAL", "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .env("VOLCTL_NODE_UUID", UUID)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (now, cut) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut lines = std::io::BufReader::new(stderr).lines();
        if !during_start {
            for l in lines.by_ref() {
                if l.map_or(true, |l| l.contains(&marker)) {
                    break;
                }
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = now.send(());
        lines.count()
    });
    let _ = cut.recv_timeout(std::time::Duration::from_secs(60));
    let running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    running
}

#[test]
fn killed_at_random_points_each_rerun_resumes_and_the_end_is_the_same() {
    let dir = tempfile::tempdir().unwrap();
    // The filesystem leaves the room: no shrink (resize2fs is not cut).
    let (img, want) = ext4_image(dir.path(), 512, 480);
    let cfg = config(dir.path());
    let mut in_progress = 0;
    for (i, ms) in delays(10, 40).into_iter().enumerate() {
        // The first cut lands while the header is being made.
        let killed = kill_run(&img, &cfg, ms * 3, i == 0);
        let luks = Command::new("cryptsetup")
            .arg("isLuks")
            .arg(&img)
            .status()
            .unwrap();
        if !luks.success() {
            // Cut before the header landed: still the plain filesystem.
            let fsck = Command::new("e2fsck")
                .args(["-f", "-n"])
                .arg(&img)
                .output()
                .unwrap();
            assert!(fsck.status.success(), "{}", text(&fsck.stdout));
            eprintln!("cut {i} after {ms} ms: before the header, ext4 intact");
            continue;
        }
        let left = luks_json(&img)["config"].get("requirements").is_some();
        eprintln!("cut {i} after {ms} ms: running {killed}, encryption in progress {left}");
        in_progress += usize::from(killed && left);
    }
    assert!(in_progress >= 7, "{in_progress} cuts landed mid-encryption");
    let run = converge(&img, &cfg, "converge");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let j = luks_json(&img);
    assert!(j["config"].get("requirements").is_none(), "{j}");
    assert!(opens(&img, 0, b"day-to-day-pass"));
    assert_files(&img, dir.path(), &want);
}

#[test]
fn xfs_and_a_full_filesystem_are_refused_and_left_byte_identical() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let xfs = dir.path().join("xfs.img");
    mkfs_image(&xfs, 320, &["mkfs.xfs", "-q", "-f"], &[]);
    let before = std::fs::read(&xfs).unwrap();
    let run = converge(&xfs, &cfg, "converge");
    assert_eq!(run.status.code(), Some(1));
    let err = text(&run.stderr);
    assert!(
        err.contains("XFS cannot shrink")
            && err.contains("provisioning.grow: true")
            && err.contains("staged wipe"),
        "{err}"
    );
    assert_eq!(std::fs::read(&xfs).unwrap(), before);

    // An ext4 whose data leaves no 32 MiB to give.
    let full = tempfile::tempdir().unwrap();
    let root = full.path().join("tree");
    std::fs::create_dir_all(&root).unwrap();
    std::fs::write(root.join("blob"), vec![7u8; 50 << 20]).unwrap();
    let img = full.path().join("full.img");
    let root = root.display().to_string();
    mkfs_image(&img, 64, &["mkfs.ext4", "-q", "-F", "-d", &root], &[]);
    let before = std::fs::read(&img).unwrap();
    let run = converge(&img, &cfg, "converge");
    assert_eq!(run.status.code(), Some(1));
    let err = text(&run.stderr);
    assert!(
        err.contains("cannot shrink below") && err.contains("staged wipe"),
        "{err}"
    );
    // The two sizes are told apart (not "needs 8 MiB, only 8 MiB remain").
    let sizes: Vec<f64> = err
        .split(" MiB")
        .filter_map(|s| s.rsplit(' ').next()?.parse().ok())
        .collect();
    assert!(
        sizes.len() >= 2 && sizes[0] > sizes[1],
        "need > room: {err}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), before);
}

/// `cryptsetup reencrypt --encrypt --init-only` by someone else, with the
/// config's very passphrase: a reencryption volctl did not start.
fn foreign_encryption_started(img: &Path) {
    let mut c = Command::new("cryptsetup")
        .args(["reencrypt", "--encrypt", "--init-only", "--type", "luks2"])
        .args(["--reduce-device-size", "32M", "--pbkdf", "pbkdf2"])
        .args(["--pbkdf-force-iterations", "1000", "--key-file", "-", "-q"])
        .arg(img)
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin
        .take()
        .unwrap()
        .write_all(b"day-to-day-pass")
        .unwrap();
    assert!(c.wait().unwrap().success());
}

#[test]
fn a_reencryption_volctl_did_not_start_is_refused_before_any_key() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = ext4_image(dir.path(), 128, 96);
    let cfg = config(dir.path());
    // Someone else starts it, with the very passphrase of the config.
    foreign_encryption_started(&img);
    let before = std::fs::read(&img).unwrap();
    let run = converge(&img, &cfg, "converge");
    assert_eq!(run.status.code(), Some(1));
    let err = text(&run.stderr);
    assert!(err.contains("no volctl-reencrypt token"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing written");
}

#[test]
fn a_forged_proof_is_refused_after_the_unlock_and_before_any_write() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = ext4_image(dir.path(), 128, 96);
    let cfg = config(dir.path());
    foreign_encryption_started(&img);
    // A token of the right shape whose proof was not made with this
    // volume's key (libcryptsetup refuses token writes during a
    // reencryption, so the JSON is edited, checksums mended).
    common::tamper_json(&img, |j| {
        j["tokens"]["0"] = serde_json::json!({
            "type": "volctl-reencrypt", "keyslots": [], "volctl_version": 2,
            "operation": "encrypt",
            "proof": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
        });
    });
    let before = std::fs::read(&img).unwrap();
    let run = converge(&img, &cfg, "converge");
    assert_eq!(run.status.code(), Some(1));
    let err = text(&run.stderr);
    assert!(err.contains("does not verify"), "{err}");
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing written");
}

/// The volume key as hex, for comparing.
fn key_hex(img: &Path) -> String {
    hex(&volume_key(img))
}

/// An ext4 image encrypted in place (files known): the start of a rotation.
fn encrypted_image(dir: &Path) -> (PathBuf, PathBuf, Sums) {
    let (img, want) = ext4_image(dir, 160, 128);
    let cfg = config(dir);
    let run = converge(&img, &cfg, "converge");
    assert!(run.status.success(), "{}", text(&run.stderr));
    (img, cfg, want)
}

fn rotate(img: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "rotate-volume-key",
        "--volume",
        "EPHEMERAL",
        "--device",
        img.to_str().unwrap(),
        "-f",
        cfg.to_str().unwrap(),
        "-o",
        "json",
    ];
    args.extend_from_slice(extra);
    volctl(&args)
}

#[test]
fn a_rotated_volume_key_no_longer_decrypts_and_every_key_still_opens() {
    let dir = tempfile::tempdir().unwrap();
    let (img, cfg, want) = encrypted_image(dir.path());
    let old_key = volume_key(&img);

    let plan = rotate(&img, &cfg, &["--dry-run"]);
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let p: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(
        p["plan"]["actions"][0]["action"], "rotate-volume-key",
        "{p}"
    );
    assert_eq!(key_hex(&img), hex(&old_key), "a dry run writes nothing");

    let run = rotate(&img, &cfg, &[]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let o: serde_json::Value = serde_json::from_slice(&run.stdout).unwrap();
    assert_eq!(o["encrypted"]["operation"], "rotate-volume-key", "{o}");
    // What the plan's estimate counts (controller/src/converge/rotate.rs):
    // the unlock, two a key, two for libcryptsetup's reencryption.
    assert_eq!(o["kdf_runs"], 2 * 2 + 3, "{o}");
    assert!(p["plan"]["actions"][0]["eta_seconds"].is_u64(), "{p}");
    assert_ne!(volume_key(&img), old_key, "a new volume key");
    // The same keyslots, opened by the same keys; nothing else left.
    let j = luks_json(&img);
    let slots: Vec<&String> = j["keyslots"].as_object().unwrap().keys().collect();
    assert_eq!(slots, ["0", "1"], "{j}");
    assert!(j["config"].get("requirements").is_none(), "{j}");
    assert!(!j["tokens"].to_string().contains("volctl-reencrypt"));
    assert!(opens(&img, 0, b"day-to-day-pass"));
    assert_files(&img, dir.path(), &want);
    // The old key decrypts the data area to garbage now.
    let plain = dir.path().join("old.img");
    decrypt_with(&img, &old_key, &plain);
    let fsck = Command::new("e2fsck")
        .args(["-f", "-n"])
        .arg(&plain)
        .output()
        .unwrap();
    assert!(
        !fsck.status.success(),
        "the old volume key still decrypts the data"
    );
    // Converged as it is: one KDF run, nothing to do.
    let again = converge(&img, &cfg, "converge");
    let o: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(o["plan"]["actions"], serde_json::json!([]), "{o}");
    assert_eq!(o["kdf_runs"], 1);
}

#[test]
fn a_rotation_cut_mid_way_resumes_at_the_next_converge() {
    let dir = tempfile::tempdir().unwrap();
    let (img, cfg, want) = encrypted_image(dir.path());
    let old_key = volume_key(&img);
    let mut in_progress = 0;
    for ms in delays(3, 40) {
        let marker = "re-encrypting to the new volume key";
        kill_verb("rotate-volume-key", marker, &img, &cfg, ms, false);
        in_progress += usize::from(luks_json(&img)["config"].get("requirements").is_some());
        // At every cut, the configured key opens it (during a rotation
        // with the old key's keyslot beside its own, as cryptsetup needs).
        assert!(
            common::opens_any(&img, b"day-to-day-pass"),
            "cut after {ms} ms"
        );
        if in_progress > 0 {
            break;
        }
    }
    assert_eq!(in_progress, 1, "no cut landed mid-rotation");
    // The next converge (or boot) resumes and finishes whatever was cut.
    let run = converge(&img, &cfg, "converge");
    assert!(run.status.success(), "{}", text(&run.stderr));
    let j = luks_json(&img);
    assert!(j["config"].get("requirements").is_none(), "{j}");
    assert!(!j["tokens"].to_string().contains("volctl-reencrypt"), "{j}");
    assert!(opens(&img, 0, b"day-to-day-pass"));
    assert_files(&img, dir.path(), &want);
    eprintln!(
        "{in_progress} cut(s) left a rotation in progress; old key replaced: {}",
        volume_key(&img) != old_key
    );
}

#[test]
fn a_keyslot_the_config_does_not_list_stops_a_rotation_before_it_starts() {
    let dir = tempfile::tempdir().unwrap();
    let (img, cfg, _) = encrypted_image(dir.path());
    std::fs::write(dir.path().join("operator.key"), "an operator's own key").unwrap();
    common::cryptsetup_then(
        &[
            "luksAddKey",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-slot",
            "5",
        ],
        &img,
        &[&dir.path().join("operator.key")],
        b"day-to-day-pass",
    );
    let before = std::fs::read(&img).unwrap();
    let run = rotate(&img, &cfg, &[]);
    assert_eq!(run.status.code(), Some(1));
    let err = text(&run.stderr);
    assert!(
        err.contains("keyslot 5 is not in the config") || err.contains("not converged"),
        "{err}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing written");
}

#[test]
fn an_ext4_larger_than_its_partition_and_a_partition_too_small_are_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    // A 96 MiB ext4 on what is now a 64 MiB partition (a damaged or
    // copied filesystem): before, `e2fsck -f -p` ran on it and marked it.
    let (img, _) = ext4fs::ext4_image(dir.path(), 96, 96, 1);
    std::fs::OpenOptions::new()
        .write(true)
        .open(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let before = std::fs::read(&img).unwrap();
    let run = converge(&img, &cfg, "converge");
    assert_eq!(run.status.code(), Some(1));
    let err = text(&run.stderr);
    assert!(
        err.contains("says it is 96 MiB, but the partition is 64 MiB")
            && err.contains("nothing was changed"),
        "{err}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing run on it");

    // 40 MiB: no room for the header and the moved part, whatever the
    // filesystem needs; the message says so (not "needs 13, 15 remain").
    let small = tempfile::tempdir().unwrap();
    let img = small.path().join("small.img");
    mkfs_image(&img, 40, &["mkfs.ext4", "-q", "-F"], &["8M"]);
    let before = std::fs::read(&img).unwrap();
    let run = converge(&img, &cfg, "converge");
    assert_eq!(run.status.code(), Some(1));
    let err = text(&run.stderr);
    assert!(
        err.contains("is 40 MiB; in-place encryption needs a partition of at least 48 MiB"),
        "{err}"
    );
    assert_eq!(std::fs::read(&img).unwrap(), before);

    assert_eq!(std::fs::read(&img).unwrap(), before);
}

/// A btrfs image of `mib` MiB whose filesystem is `fs_mib` MiB, filled
/// from a tree of files (`mkfs.btrfs --rootdir`).
fn btrfs_image(dir: &Path, mib: u64, fs_mib: u64) -> (PathBuf, Sums) {
    let want = ext4fs::tree(dir, 4);
    let img = dir.join("btrfs.img");
    let size = format!("{fs_mib}M");
    let root = dir.join("tree");
    ext4fs::mkfs_image(
        &img,
        mib,
        &[
            "mkfs.btrfs",
            "-q",
            "-b",
            &size,
            "--rootdir",
            root.to_str().unwrap(),
        ],
        &[],
    );
    (img, want)
}

/// Mounts the btrfs filesystem `plain` read-only (a loop device) and
/// reads its files; `btrfs check --readonly` passes first.
fn btrfs_tree(plain: &Path, scratch: &Path) -> Sums {
    let check = Command::new("btrfs")
        .args(["check", "--readonly"])
        .arg(plain)
        .output()
        .unwrap();
    assert!(
        check.status.success(),
        "btrfs check: {}",
        text(&check.stderr)
    );
    ext4fs::sums_mounted(plain, scratch)
}

#[test]
fn a_btrfs_image_is_encrypted_in_place_and_its_files_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    // btrfs fills the image: it must shrink by 32 MiB first (mounted; the
    // kernel shrinks btrfs to no less than 256 MiB).
    let (img, want) = btrfs_image(dir.path(), 320, 320);
    let cfg = config(dir.path());
    let plan = converge(&img, &cfg, "plan");
    assert!(plan.status.success(), "{}", text(&plan.stderr));
    let p: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let action = &p["plan"]["actions"][0];
    assert_eq!(action["action"], "encrypt-in-place", "{p}");
    assert_eq!(action["shrink_mib"], 32, "{p}");

    let run = converge(&img, &cfg, "converge");
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(opens(&img, 0, b"day-to-day-pass"));
    let plain = dir.path().join("plain.img");
    ext4fs::decrypt_with(&img, &volume_key(&img), &plain);
    assert_eq!(btrfs_tree(&plain, dir.path()), want, "the files read back");
    let sb = std::fs::read(&plain).unwrap();
    let total = u64::from_le_bytes(sb[0x1_0000 + 0x70..0x1_0000 + 0x78].try_into().unwrap());
    assert_eq!(total, 288 << 20, "shrunk by the header and its moved copy");
}

#[test]
fn a_btrfs_that_would_shrink_below_the_kernel_s_limit_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = btrfs_image(dir.path(), 272, 272);
    let before = std::fs::read(&img).unwrap();
    let o = converge(&img, &config(dir.path()), "converge");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("the btrfs filesystem cannot shrink below 256.")
            && text(&o.stderr).contains("MiB, and only 240.0 MiB remain"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read(&img).unwrap(), before, "nothing written");
}

#[test]
fn a_btrfs_over_several_devices_is_refused_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _) = btrfs_image(dir.path(), 320, 256);
    // The superblock says two devices (the checksum is not checked by the
    // refusal, which reads the fields it needs).
    let mut bytes = std::fs::read(&img).unwrap();
    bytes[0x1_0000 + 0x88..0x1_0000 + 0x90].copy_from_slice(&2u64.to_le_bytes());
    std::fs::write(&img, &bytes).unwrap();
    let o = converge(&img, &config(dir.path()), "converge");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("the btrfs filesystem spans 2 devices"),
        "{}",
        text(&o.stderr)
    );
    assert_eq!(std::fs::read(&img).unwrap(), bytes, "nothing written");
}

/// 320 MiB of XFS on 352 MiB (XFS cannot shrink: a boot grows the
/// partition first, `provisioning.grow`), files copied in by a mount,
/// encrypted in place by `volctl converge`: (image, config, files).
fn encrypted_xfs(dir: &Path) -> (PathBuf, PathBuf, Sums) {
    let img = dir.join("xfs.img");
    mkfs_image(&img, 352, &["mkfs.xfs", "-q", "-f", "-d", "size=320m"], &[]);
    let want = ext4fs::tree(dir, 4);
    ext4fs::copy_in(&img, &dir.join("tree"), dir);
    let cfg = config(dir);
    let run = converge(&img, &cfg, "converge");
    assert!(run.status.success(), "{}", text(&run.stderr));
    (img, cfg, want)
}

/// `xfs_repair -n` passes on the XFS image `plain`.
fn xfs_repair_passes(plain: &Path) {
    let repair = Command::new("xfs_repair")
        .arg("-n")
        .arg(plain)
        .output()
        .unwrap();
    assert!(repair.status.success(), "{}", text(&repair.stderr));
}

#[test]
fn an_xfs_that_leaves_the_room_is_encrypted_in_place_and_its_files_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (img, _, want) = encrypted_xfs(dir.path());
    assert!(opens(&img, 0, b"day-to-day-pass"));
    let plain = dir.path().join("plain.img");
    ext4fs::decrypt_with(&img, &volume_key(&img), &plain);
    xfs_repair_passes(&plain);
    assert_eq!(
        ext4fs::sums_mounted(&plain, dir.path()),
        want,
        "the files read back"
    );
}

/// Back to plain: `volctl disable-encryption` on the encrypted XFS leaves
/// the device plain XFS from its first byte (no LUKS2 header, the header
/// file gone), `xfs_repair -n` clean, every file as it was.
#[test]
fn an_encrypted_xfs_is_decrypted_in_place_and_its_files_are_intact() {
    let dir = tempfile::tempdir().unwrap();
    let (img, cfg, want) = encrypted_xfs(dir.path());
    let headers = dir.path().join("headers");
    let out = on_volume(
        "disable-encryption",
        &img,
        &cfg,
        &["--header-dir", headers.to_str().unwrap()],
    );
    assert!(out.status.success(), "{}", text(&out.stderr));
    let is_luks = Command::new("cryptsetup")
        .arg("isLuks")
        .arg(&img)
        .status()
        .unwrap();
    assert!(!is_luks.success(), "still LUKS");
    assert!(
        !headers.join("EPHEMERAL/luks2-header").exists(),
        "the header file is left"
    );
    xfs_repair_passes(&img);
    assert_eq!(
        ext4fs::sums_mounted(&img, dir.path()),
        want,
        "the files read back"
    );
}
