//! Crash safety proven at every write (docs/architecture.md, "Power cuts"):
//! in-place encryption and volume-key rotation are each cut at every write
//! they make to the device, the cut write landing whole and landing half;
//! after each cut the volume must open by its old or new keys (or still be
//! the untouched ext4), and after the next `volctl converge` — what a user,
//! or the next boot, runs — every configured key opens it with
//! `cryptsetup` and its data, decrypted with the volume key `cryptsetup`
//! shows, passes `e2fsck -fn` and gives every file back with its SHA-256.
//! The states a cut in the last steps leaves are cut again during their
//! resume, at every write of it.

mod common;

use common::cuts::{self, Cut, CutMode, Injector, Operation, Points};
use common::ext4fs::{self, Sums};
use common::{dump, node_pass, opens, opens_any, text, UUID};
use std::path::{Path, PathBuf};
use std::process::Command;

const PASS: &[u8] = b"day-to-day-pass";

fn config(dir: &Path) -> PathBuf {
    ext4fs::in_place_config(dir)
}

/// `volctl VERB --volume EPHEMERAL --device IMG -f CFG`.
fn volctl(verb: &str, img: &Path, cfg: &Path) -> Command {
    let mut c = cuts::isolated(Path::new(env!("CARGO_BIN_EXE_volctl")));
    c.args([verb, "--volume", "EPHEMERAL", "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .env("VOLCTL_NODE_UUID", UUID)
        .env_remove("VOLCTL_STATE_SALT_FILE");
    c
}

/// A 64 MiB image holding a 32 MiB ext4 (room left for the header: no
/// shrink, which is resize2fs's and not cut here) with three 3 MiB files,
/// a sparse one and a deep path.
fn plain_image(dir: &Path) -> (PathBuf, Sums) {
    ext4fs::ext4_image(dir, 64, 32, 3)
}

/// Right after a cut: the untouched ext4 with every file, or a LUKS2
/// volume the configured passphrase opens (`cryptsetup`, any slot).
fn old_or_new_opens(img: &Path, scratch: &Path, want: &Sums) {
    let luks = Command::new("cryptsetup")
        .arg("isLuks")
        .arg(img)
        .status()
        .unwrap()
        .success();
    if luks {
        assert!(opens_any(img, PASS), "cryptsetup opens it by no slot");
    } else {
        ext4fs::assert_tree(img, scratch, want);
    }
}

/// Right after a cut in a rotation: `cryptsetup` opens it by the
/// configured passphrase (any slot). In the one state where it cannot —
/// libcryptsetup's own teardown dropped both of the old key's keyslots
/// while its requirement still stands; every byte is under the new key —
/// `volctl plan` (read-only) unlocks it by the new key in slot 0 and plans
/// to finish it.
fn rotation_opens(img: &Path, cfg: &Path) {
    if opens_any(img, PASS) {
        return;
    }
    let out = volctl("plan", img, cfg)
        .args(["-o", "json"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "neither cryptsetup nor volctl opens it: {}",
        text(&out.stderr)
    );
    let p: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(p["unlocked_by"][0], 0, "{p}");
    assert_eq!(
        p["plan"]["actions"][0]["action"], "resume-reencryption",
        "{p}"
    );
}

/// After the next converge: an ordinary LUKS2 volume (no reencryption
/// recorded, no proof left) whose two keys open their slots and whose data
/// is the tree.
fn converged(img: &Path, scratch: &Path, want: &Sums) {
    let j = dump(img);
    assert!(
        j["config"].get("requirements").is_none(),
        "requirements left: {j}"
    );
    assert!(
        !j["tokens"].to_string().contains("volctl-reencrypt"),
        "proof left: {j}"
    );
    let slots: Vec<&String> = j["keyslots"].as_object().unwrap().keys().collect();
    assert_eq!(slots, ["0", "1"], "keyslots: {j}");
    assert!(opens(img, 0, PASS), "slot 0 does not open");
    assert!(opens(img, 1, &node_pass()), "slot 1 does not open");
    ext4fs::assert_encrypted_tree(img, 0, PASS, scratch, want);
}

/// Runs `volctl converge` (uncut) and checks [`converged`].
fn converge_then_check(img: &Path, cfg: &Path, scratch: &Path, want: &Sums) {
    let out = volctl("converge", img, cfg).output().unwrap();
    assert!(out.status.success(), "converge: {}", text(&out.stderr));
    converged(img, scratch, want);
}

#[test]
fn in_place_encryption_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let (base, want) = plain_image(dir.path());
    let cfg = config(dir.path());
    let command = |img: &Path| volctl("converge", img, &cfg);
    let after_cut = |img: &Path, scratch: &Path, _: Cut| old_or_new_opens(img, scratch, &want);
    let next = |img: &Path, scratch: &Path, _: Cut| converge_then_check(img, &cfg, scratch, &want);
    let op = Operation::every_write(
        "in-place encryption (converge)",
        &base,
        &command,
        &after_cut,
        &next,
    );
    let report = cuts::sweep_alone(&op);
    // The header (two copies, keyslots) and three 16 MiB steps at least.
    assert!(report.writes >= 8, "{report:?}");
}

#[test]
fn volume_key_rotation_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let (encrypted, want) = plain_image(dir.path());
    let cfg = config(dir.path());
    let out = volctl("converge", &encrypted, &cfg).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let command = |img: &Path| volctl("rotate-volume-key", img, &cfg);
    let after_cut = |img: &Path, _: &Path, _: Cut| rotation_opens(img, &cfg);
    let next = |img: &Path, scratch: &Path, _: Cut| converge_then_check(img, &cfg, scratch, &want);
    let op = Operation::every_write(
        "volume-key rotation (rotate-volume-key)",
        &encrypted,
        &command,
        &after_cut,
        &next,
    );
    let report = cuts::sweep_alone(&op);
    assert!(report.writes >= 8, "{report:?}");
}

/// What the header must show after a first cut that is cut again while it
/// resumes (checked, so that a change in libcryptsetup's writes is seen
/// rather than another state tested by mistake).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// A step cut inside: its hotzone flagged (libcryptsetup's recovery).
    HotzoneFlagged,
    /// Every byte written, the run not torn down: one active segment
    /// under the final key, the requirement still set (volctl finishes it).
    AllWritten,
}

fn shape(img: &Path) -> Option<Shape> {
    let j = dump(img);
    let segments = j["segments"].as_object().unwrap();
    let flags = |s: &serde_json::Value| s["flags"].to_string();
    if segments
        .values()
        .any(|s| flags(s).contains("in-reencryption"))
    {
        return Some(Shape::HotzoneFlagged);
    }
    let active: Vec<_> = segments
        .values()
        .filter(|s| !flags(s).contains("backup-"))
        .collect();
    let requirement = j["config"].get("requirements").is_some();
    (requirement && active.len() == 1 && active[0]["type"] == "crypt").then_some(Shape::AllWritten)
}

/// Each of `firsts` (a first cut of `op` and the shape it leaves), cut
/// again at every write of the converge that resumes it, whole and torn,
/// then resumed uncut and checked.
fn cut_the_resume(
    inj: &Injector,
    op: &Operation<'_>,
    cfg: &Path,
    want: &Sums,
    firsts: &[(Cut, Shape, Points)],
) {
    for &(first, expected, points) in firsts {
        let dir = tempfile::tempdir().unwrap();
        let cut = cuts::cut_image(inj, op, first, dir.path()).unwrap();
        assert_eq!(shape(&cut), Some(expected), "{} cut at {first}", op.name);
        let command = |img: &Path| volctl("converge", img, cfg);
        let after_cut = |img: &Path, _: &Path, _: Cut| rotation_opens(img, cfg);
        let next =
            |img: &Path, scratch: &Path, _: Cut| converge_then_check(img, cfg, scratch, want);
        let name = format!("{} cut at {first} ({expected:?}), its resume", op.name);
        let resume = Operation {
            name: &name,
            base: &cut,
            points,
            command: &command,
            after_cut: &after_cut,
            next: &next,
        };
        cuts::sweep(inj, &resume);
    }
}

#[test]
fn an_encryption_s_last_states_survive_a_second_cut_while_they_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, want) = plain_image(dir.path());
    let cfg = config(dir.path());
    let inj = Injector::build();
    let none = |_: &Path, _: &Path, _: Cut| {};
    let command = |img: &Path| volctl("converge", img, &cfg);
    let encrypt = Operation {
        name: "in-place encryption",
        base: &plain,
        points: Points::Every,
        command: &command,
        after_cut: &none,
        next: &none,
    };
    let whole = |at| Cut {
        at,
        mode: CutMode::Whole,
    };
    // Write 20: inside the commit that flags the last step's hotzone;
    // write 38: libcryptsetup's teardown, wiping the moved copy.
    cut_the_resume(
        &inj,
        &encrypt,
        &cfg,
        &want,
        &[
            (whole(20), Shape::HotzoneFlagged, Points::Every),
            (whole(38), Shape::AllWritten, Points::Every),
        ],
    );
}

#[test]
fn a_rotation_s_last_states_survive_a_second_cut_while_they_resume() {
    let dir = tempfile::tempdir().unwrap();
    let (plain, want) = plain_image(dir.path());
    let cfg = config(dir.path());
    let inj = Injector::build();
    let none = |_: &Path, _: &Path, _: Cut| {};
    let whole = |at| Cut {
        at,
        mode: CutMode::Whole,
    };
    let encrypted = dir.path().join("encrypted.img");
    std::fs::copy(&plain, &encrypted).unwrap();
    let out = volctl("converge", &encrypted, &cfg).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    let rotate = |img: &Path| volctl("rotate-volume-key", img, &cfg);
    let rotation = Operation {
        name: "volume-key rotation",
        base: &encrypted,
        points: Points::Every,
        command: &rotate,
        after_cut: &none,
        next: &none,
    };
    // Write 35: inside the commit that flags the last step (its recovery,
    // libcryptsetup's checksum one, writes each 4 KiB block on its own:
    // over 4,000 writes, sampled); write 44: after the last step's commit;
    // write 58: the teardown has dropped both of the old key's keyslots.
    let sampled = Points::Sampled {
        head: 16,
        tail: 48,
        stride: 64,
    };
    cut_the_resume(
        &inj,
        &rotation,
        &cfg,
        &want,
        &[
            (whole(35), Shape::HotzoneFlagged, sampled),
            (whole(44), Shape::AllWritten, Points::Every),
            (whole(58), Shape::AllWritten, Points::Every),
        ],
    );
}

/// EPHEMERAL formatted fresh (no `inPlace`): the same two keys.
fn format_config(dir: &Path) -> PathBuf {
    let p = dir.join("format.yaml");
    let text = std::fs::read_to_string(config(dir)).unwrap();
    std::fs::write(&p, text.replace("  inPlace: true\n", "")).unwrap();
    p
}

#[test]
fn a_first_format_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let blank = dir.path().join("blank.img");
    std::fs::File::create(&blank)
        .unwrap()
        .set_len(40 << 20)
        .unwrap();
    let cfg = format_config(dir.path());
    let command = |img: &Path| volctl("converge", img, &cfg);
    // The one moment nothing opens the volume yet (docs/architecture.md,
    // "the first format"): what matters is that the next run finishes it.
    let after_cut = |_: &Path, _: &Path, _: Cut| {};
    let next = |img: &Path, _: &Path, _: Cut| {
        let out = volctl("converge", img, &cfg).output().unwrap();
        assert!(out.status.success(), "converge: {}", text(&out.stderr));
        let j = dump(img);
        let slots: Vec<&String> = j["keyslots"].as_object().unwrap().keys().collect();
        assert_eq!(slots, ["0", "1"], "keyslots: {j}");
        assert!(opens(img, 0, PASS), "slot 0 does not open");
        assert!(opens(img, 1, &node_pass()), "slot 1 does not open");
    };
    let op = Operation::every_write(
        "first format (converge)",
        &blank,
        &command,
        &after_cut,
        &next,
    );
    let report = cuts::sweep_alone(&op);
    assert!(report.writes >= 4, "{report:?}");
}
