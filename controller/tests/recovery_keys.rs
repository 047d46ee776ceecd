//! Recovery keys on a real LUKS2 header: enrolled by `volctl converge`,
//! handed over once (a 0600 file here), opened by the `cryptsetup` CLI with
//! the text exactly as shown, stored nowhere else, and left alone by the
//! next run.

mod common;

use common::{image, opens, text, volctl, PBKDF};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

fn config(dir: &Path) -> String {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      static: {{passphrase: day-to-day-pass}}\n    - slot: 9\n      recovery: {{}}\n"),
    )
    .unwrap();
    p.display().to_string()
}

#[test]
fn a_recovery_key_is_handed_over_once_and_opens_with_cryptsetup() {
    let img = image(40);
    let cfg = config(img.dir.path());
    let dev = img.path.display().to_string();
    let out_file = img.dir.path().join("recovery.txt");
    let run = |extra: &[&str]| {
        let mut args = vec![
            "converge",
            "--volume",
            "EPHEMERAL",
            "--device",
            &dev,
            "-f",
            &cfg,
            "-o",
            "json",
        ];
        args.extend_from_slice(extra);
        volctl(&args)
    };

    let first = run(&["--recovery-key-out", &out_file.display().to_string()]);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let mode = std::fs::metadata(&out_file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let written = std::fs::read_to_string(&out_file).unwrap();
    let key = written
        .trim()
        .strip_prefix("EPHEMERAL slot 9: ")
        .expect(&written)
        .to_string();
    assert_eq!(key.split('-').count(), 14, "{key}");
    assert!(
        opens(&img.path, 9, key.as_bytes()),
        "cryptsetup opens slot 9 with the key as shown"
    );
    assert!(!opens(&img.path, 9, key.to_lowercase().as_bytes()));

    // Stored nowhere else: not in what volctl printed, not on the device.
    let printed = text(&first.stdout) + &text(&first.stderr);
    assert!(!printed.contains(&key), "{printed}");
    let disk = std::fs::read(&img.path).unwrap();
    assert!(!disk.windows(key.len()).any(|w| w == key.as_bytes()));
    let v: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    assert!(v["plan"]["actions"].to_string().contains("recovery"), "{v}");

    // The next run leaves the slot alone and shows nothing: one KDF run (the
    // static key unlocks; the recovery key is never tried unattended).
    let second_file = img.dir.path().join("again.txt");
    let second = run(&["--recovery-key-out", &second_file.display().to_string()]);
    assert!(second.status.success(), "{}", text(&second.stderr));
    let v: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(v["plan"]["actions"], serde_json::json!([]), "{v}");
    assert_eq!(v["kdf_runs"], 1);
    assert_eq!(v["unlocked_by"][0], 0);
    assert!(!second_file.exists(), "no key, no file");
    assert!(opens(&img.path, 9, key.as_bytes()));
}

#[test]
fn an_existing_key_file_is_refused_before_anything_is_enrolled() {
    let img = image(40);
    let cfg = config(img.dir.path());
    let taken = img.dir.path().join("old-key.txt");
    std::fs::write(&taken, "an older recovery key someone still needs\n").unwrap();
    let out = volctl(&[
        "converge",
        "--volume",
        "EPHEMERAL",
        "--device",
        &img.path.display().to_string(),
        "-f",
        &cfg,
        "--recovery-key-out",
        &taken.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("must not exist yet"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        std::fs::read(&img.path).unwrap().iter().all(|&b| b == 0),
        "nothing written"
    );
    assert_eq!(
        std::fs::read_to_string(&taken).unwrap(),
        "an older recovery key someone still needs\n"
    );
}
