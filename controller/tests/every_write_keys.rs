//! The keys a person holds, replaced under a power cut at every write
//! (docs/architecture.md, "Power cuts"): `volctl passphrase change` and
//! `volctl recovery-key rotate` are each cut at every write they make to
//! the device, the cut write landing whole and landing half. After each
//! cut, and again after the next `volctl converge` (answered as a person
//! would: the new key first, then the old one), checked outside volctl:
//! every keyslot the header holds opens with `cryptsetup` by the old or the
//! new key of its kind, the configured slots open, the volume key
//! `cryptsetup` shows is the one from before, and the data area holds the
//! same bytes. A change the cut left half-done is finished by the next run
//! that is answered with the new key.

mod common;

use common::agent::{self, questions};
use common::cuts::{self, base_image, data_area, fill_data, Cut, Operation};
use common::{opens, opens_any, slots, text, volume_key, PBKDF, UUID};
use std::path::{Path, PathBuf};
use std::process::Command;

const OLD: &str = "old-pass";
const NEW: &str = "new-pass";
const PROMPT_SLOT: u32 = 0;
const RECOVERY_SLOT: u32 = 9;

/// `persistence` with a typed passphrase in slot 0 and a recovery key in 9.
fn config(dir: &Path) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      prompt: {{}}\n    - slot: 9\n      recovery: {{}}\n"),
    )
    .unwrap();
    p
}

/// `volctl ARGS --volume persistence --device IMG -f CFG -o json`,
/// answered with `answers` by an agent in a folder beside the image;
/// returns the command and the agent's log.
fn volctl(args: &[&str], img: &Path, cfg: &Path, answers: &[&str]) -> (Command, PathBuf) {
    let work = img.parent().unwrap();
    let (mut c, log) = agent::answered(Path::new(env!("CARGO_BIN_EXE_volctl")), work, answers);
    c.args(args)
        .args(["--volume", "persistence", "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .args(["-o", "json"])
        .env("VOLCTL_NODE_UUID", UUID);
    (c, log)
}

/// The recovery key in a file `volctl` wrote (`VOLUME slot N: KEY`).
fn read_key(p: &Path) -> String {
    let t = std::fs::read_to_string(p).unwrap();
    t.trim().rsplit(' ').next().unwrap().to_string()
}

/// A formatted volume: its image, its recovery key, its volume key and a
/// fingerprint of its data area (4 MiB of random bytes written there).
struct Volume {
    img: PathBuf,
    recovery: String,
    volume_key: String,
    data: Vec<u8>,
}

fn formatted(dir: &Path, cfg: &Path) -> Volume {
    let img = base_image(dir);
    let key_file = dir.join("first-key.txt");
    let (mut c, _) = volctl(&["converge"], &img, cfg, &[OLD, OLD]);
    let out = c.arg("--recovery-key-out").arg(&key_file).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    fill_data(&img);
    Volume {
        recovery: read_key(&key_file),
        volume_key: volume_key(&img, PROMPT_SLOT, OLD.as_bytes()),
        data: data_area(&img),
        img,
    }
}

/// Every keyslot opens by one of `keys`; the volume key and the data area
/// are those of `v`.
fn every_slot_opens(img: &Path, v: &Volume, keys: &[&str]) {
    for slot in slots(img) {
        assert!(
            keys.iter().any(|k| opens(img, slot, k.as_bytes())),
            "after the next run, slot {slot} of {:?} opens by none of the keys",
            slots(img)
        );
    }
    same_volume(img, v, keys);
}

/// The volume key (read through any slot one of `keys` opens) and the data
/// area are those of `v`.
fn same_volume(img: &Path, v: &Volume, keys: &[&str]) {
    let (slot, key) = slots(img)
        .into_iter()
        .find_map(|s| {
            keys.iter()
                .find(|k| opens(img, s, k.as_bytes()))
                .map(|k| (s, *k))
        })
        .expect("no slot opens by any key");
    assert_eq!(
        volume_key(img, slot, key.as_bytes()),
        v.volume_key,
        "the volume key changed"
    );
    assert_eq!(data_area(img), v.data, "the data area changed");
}

/// Which of `passes` opens slot 0.
fn current<'a>(img: &Path, passes: &[&'a str]) -> &'a str {
    passes
        .iter()
        .find(|p| opens(img, PROMPT_SLOT, p.as_bytes()))
        .copied()
        .unwrap_or_else(|| panic!("slot 0 opens by none of {passes:?}"))
}

/// Runs the next `volctl converge`, answered by `answers`; returns its
/// JSON and how many questions it asked.
fn next_converge(img: &Path, cfg: &Path, answers: &[&str]) -> (serde_json::Value, usize) {
    let (mut c, log) = volctl(&["converge"], img, cfg, answers);
    let out = c.output().unwrap();
    assert!(out.status.success(), "converge: {}", text(&out.stderr));
    let v = serde_json::from_slice(&out.stdout).unwrap();
    (v, questions(&log).len())
}

#[test]
fn a_passphrase_change_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let v = formatted(dir.path(), &cfg);
    let keys = [OLD, NEW, v.recovery.as_str()];
    let command = |img: &Path| volctl(&["passphrase", "change"], img, &cfg, &[OLD, NEW, NEW]).0;
    let after_cut = |img: &Path, _: &Path, _: Cut| {
        assert!(
            opens_any(img, OLD.as_bytes()) || opens_any(img, NEW.as_bytes()),
            "neither passphrase opens it"
        );
        assert!(opens(img, RECOVERY_SLOT, v.recovery.as_bytes()));
        same_volume(img, &v, &keys);
    };
    let next = |img: &Path, _: &Path, _: Cut| {
        let (j, asked) = next_converge(img, &cfg, &[NEW, OLD]);
        let by = if asked == 1 { NEW } else { OLD };
        assert_eq!(
            current(img, &[OLD, NEW]),
            by,
            "slot 0 after the next run: {j}"
        );
        if by == NEW {
            assert_eq!(slots(img), [PROMPT_SLOT, RECOVERY_SLOT], "{j}");
        }
        assert!(opens(img, RECOVERY_SLOT, v.recovery.as_bytes()));
        every_slot_opens(img, &v, &keys);
    };
    let op = Operation::every_write("passphrase change", &v.img, &command, &after_cut, &next);
    let report = cuts::sweep_alone(&op);
    // A spare keyslot, the slot replaced, the spare removed: each at least
    // one header commit (two copies).
    assert!(report.writes >= 6, "{report:?}");
}

#[test]
fn a_recovery_key_rotation_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path());
    let v = formatted(dir.path(), &cfg);
    let new_key = |img: &Path| img.parent().unwrap().join("new-key.txt");
    let command = |img: &Path| {
        let (mut c, _) = volctl(&["recovery-key", "rotate"], img, &cfg, &[OLD]);
        c.arg("--recovery-key-out").arg(new_key(img));
        c
    };
    let after_cut = |img: &Path, _: &Path, _: Cut| {
        // The new key is handed over before anything is written.
        let new = read_key(&new_key(img));
        assert!(
            opens_any(img, v.recovery.as_bytes()) || opens_any(img, new.as_bytes()),
            "neither recovery key opens it"
        );
        assert!(opens(img, PROMPT_SLOT, OLD.as_bytes()));
        same_volume(img, &v, &[OLD, &v.recovery, &new]);
    };
    let next = |img: &Path, _: &Path, _: Cut| {
        let new = read_key(&new_key(img));
        let (j, asked) = next_converge(img, &cfg, &[&new, &v.recovery, OLD]);
        if asked == 1 {
            // Opened by the new key (in slot 9 or the spare): the rotation
            // is finished, the spare gone.
            assert_eq!(slots(img), [PROMPT_SLOT, RECOVERY_SLOT], "{j}");
            assert!(opens(img, RECOVERY_SLOT, new.as_bytes()), "{j}");
        }
        assert!(opens(img, PROMPT_SLOT, OLD.as_bytes()));
        assert!(
            opens(img, RECOVERY_SLOT, new.as_bytes())
                || opens(img, RECOVERY_SLOT, v.recovery.as_bytes()),
            "slot 9 opens by neither recovery key: {j}"
        );
        every_slot_opens(img, &v, &[OLD, &v.recovery, &new]);
    };
    let op = Operation::every_write("recovery-key rotation", &v.img, &command, &after_cut, &next);
    let report = cuts::sweep_alone(&op);
    assert!(report.writes >= 6, "{report:?}");
}
