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

#[test]
fn a_held_key_whose_fetch_could_not_be_shown_is_still_held() {
    let img = image(40);
    let cfg = config(img.dir.path());
    let run_dir = img.dir.path().join("run");
    let c = volctl(&[
        "converge",
        "--volume",
        "EPHEMERAL",
        "--device",
        img.path.to_str().unwrap(),
        "-f",
        &cfg,
        "--hold-recovery-key",
        run_dir.to_str().unwrap(),
    ]);
    assert!(c.status.success(), "{}", text(&c.stderr));
    let record = run_dir.join("recovery/EPHEMERAL.json");
    assert!(record.exists());
    let fetch = |stdout: std::process::Stdio| {
        std::process::Command::new(env!("CARGO_BIN_EXE_volctl"))
            .args([
                "recovery-key",
                "fetch",
                "--volume",
                "EPHEMERAL",
                "--run-dir",
            ])
            .arg(&run_dir)
            .stdout(stdout)
            .output()
            .unwrap()
    };
    // Its reader gone before it writes: nothing shown, nothing forgotten.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let lost = fetch(writer.into());
    assert_eq!(lost.status.code(), Some(141), "{}", text(&lost.stderr));
    assert!(record.exists(), "a key nobody saw is still held");
    // The next fetch shows it, once, and it opens slot 9.
    let shown = fetch(std::process::Stdio::piped());
    assert!(shown.status.success(), "{}", text(&shown.stderr));
    let line = text(&shown.stdout);
    let key = line
        .lines()
        .find_map(|l| l.strip_prefix("EPHEMERAL slot 9: "))
        .unwrap_or_else(|| panic!("{line}"));
    assert!(opens(&img.path, 9, key.as_bytes()));
    assert!(!record.exists(), "forgotten once shown");
}
