//! Keys a person types, on real LUKS2 headers: `volctl` asks through the
//! systemd ask-password protocol and a real agent process answers
//! (`tests/agents/ask_password_agent.py`); the `cryptsetup` CLI checks
//! every result.

mod common;

use common::agent::Agent;
use common::{image, opens, opens_any, slots, text, PBKDF, UUID};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn write_config(dir: &Path, keys: &str) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n{keys}"),
    )
    .unwrap();
    p
}

const PROMPT: &str = "    - slot: 0\n      prompt: {}\n";
const PROMPT_ONE_TRY: &str = "    - slot: 0\n      prompt: {tries: 1}\n";
const RECOVERY: &str = "    - slot: 9\n      recovery: {}\n";

/// `volctl VERB --volume persistence --device IMG -f CFG -o json EXTRA…`,
/// answered by `agent`, optionally cut after `cut` writes to the image.
fn volctl(
    verb: &[&str],
    img: &Path,
    cfg: &Path,
    agent: &Agent,
    extra: &[&str],
    cut: Option<(&Path, u32)>,
) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_volctl"));
    c.args(verb)
        .args(["--volume", "persistence", "--device"])
        .arg(img)
        .arg("-f")
        .arg(cfg)
        .args(["-o", "json"])
        .args(extra)
        .env("VOLCTL_NODE_UUID", UUID)
        .env("VOLCTL_ASK_PASSWORD_DIR", &agent.dir);
    if let Some((shim, n)) = cut {
        c.env("LD_PRELOAD", shim)
            .env("VOLCTL_CUT_PATH", img)
            .env("VOLCTL_CUT_AFTER", n.to_string());
    }
    c.output().unwrap()
}

fn json(o: &Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn enrolment_asks_twice_then_one_answer_opens_with_one_kdf_run() {
    let img = image(40);
    let cfg = write_config(img.dir.path(), PROMPT);
    let agent = Agent::start(img.dir.path(), &["Tr0ub4dor-3", "Tr0ub4dor-3"]);
    let first = json(&volctl(
        &["converge"],
        &img.path,
        &cfg,
        &agent,
        &["-vv"],
        None,
    ));
    assert_eq!(first["formatted"], true);
    assert_eq!(
        agent.questions(),
        [
            "New passphrase for persistence",
            "Repeat the passphrase for persistence"
        ]
    );
    assert!(
        opens(&img.path, 0, b"Tr0ub4dor-3"),
        "cryptsetup opens slot 0"
    );
    drop(agent);

    let agent = Agent::start(img.dir.path(), &["Tr0ub4dor-3"]);
    let out = volctl(&["converge"], &img.path, &cfg, &agent, &["-vv"], None);
    let again = json(&out);
    assert_eq!(again["kdf_runs"], 1, "{again}");
    assert_eq!(again["unlocked_by"], serde_json::json!([0, "prompt"]));
    assert_eq!(again["plan"]["actions"], serde_json::json!([]));
    assert_eq!(agent.questions(), ["Passphrase for persistence"]);
    // Run without a terminal, it said what it waited for and where.
    let said = text(&out.stderr);
    assert!(
        said.contains("Passphrase for persistence: asked on the ask-password agents")
            && said.contains(&agent.dir.display().to_string()),
        "{said}"
    );
    // Never in a log line (at -vv), nor anywhere on the device but its keyslot.
    assert!(
        !text(&out.stderr).contains("Tr0ub4dor"),
        "{}",
        text(&out.stderr)
    );
    let disk = std::fs::read(&img.path).unwrap();
    assert!(!disk.windows(11).any(|w| w == b"Tr0ub4dor-3"));
}

#[test]
fn two_different_answers_enrol_nothing() {
    let img = image(40);
    let cfg = write_config(img.dir.path(), PROMPT_ONE_TRY);
    let agent = Agent::start(img.dir.path(), &["first-try", "f1rst-try"]);
    let out = volctl(&["converge"], &img.path, &cfg, &agent, &[], None);
    assert!(!out.status.success());
    assert!(
        text(&out.stderr).contains("differ"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        std::fs::read(&img.path).unwrap().iter().all(|&b| b == 0),
        "nothing was written"
    );
}

#[test]
fn three_wrong_answers_write_nothing_and_leave_it_waiting_for_its_key() {
    let img = image(40);
    let cfg = write_config(img.dir.path(), PROMPT);
    let agent = Agent::start(img.dir.path(), &["right-one", "right-one"]);
    json(&volctl(&["converge"], &img.path, &cfg, &agent, &[], None));
    drop(agent);
    let before = std::fs::read(&img.path).unwrap();

    let agent = Agent::start(
        img.dir.path(),
        &["wrong-1", "wrong-2", "wrong-3", "right-one"],
    );
    let out = volctl(&["converge"], &img.path, &cfg, &agent, &[], None);
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("waiting for its key") && err.contains("3 wrong"),
        "{err}"
    );
    assert_eq!(agent.questions().len(), 3, "asked exactly `tries` times");
    assert!(
        std::fs::read(&img.path).unwrap() == before,
        "byte-identical"
    );
}

#[test]
fn a_recovery_key_answers_the_prompt_and_a_typo_costs_no_kdf_run() {
    let img = image(40);
    let cfg = write_config(img.dir.path(), RECOVERY);
    let key_file = img.dir.path().join("recovery.txt");
    let agent = Agent::start(img.dir.path(), &[]);
    let k = key_file.display().to_string();
    json(&volctl(
        &["converge"],
        &img.path,
        &cfg,
        &agent,
        &["--recovery-key-out", &k],
        None,
    ));
    let key = std::fs::read_to_string(&key_file).unwrap();
    let key = key.trim().rsplit(' ').next().unwrap().to_string();
    assert!(opens(&img.path, 9, key.as_bytes()));
    drop(agent);

    // One character off: caught by the check group, no KDF run; then the key
    // typed sloppily (lower case, spaces) opens it.
    let mut typo = key.clone().into_bytes();
    typo[3] = if typo[3] == b'A' { b'B' } else { b'A' };
    let typo = String::from_utf8(typo).unwrap();
    let sloppy = key.to_lowercase().replace('-', " ");
    let agent = Agent::start(img.dir.path(), &[&typo, &sloppy]);
    let out = volctl(&["converge"], &img.path, &cfg, &agent, &["-vv"], None);
    let v = json(&out);
    assert_eq!(v["kdf_runs"], 1, "the typo cost no KDF run: {v}");
    assert_eq!(v["unlocked_by"], serde_json::json!([9, "recovery"]));
    assert_eq!(
        agent.questions(),
        [
            "Recovery key for persistence",
            "Not accepted, 2 tries left. Recovery key for persistence"
        ]
    );
    assert!(!text(&out.stderr).contains(&key[..9]));
}

#[test]
fn recovery_key_rotate_hands_the_new_key_over_before_the_old_one_goes() {
    let img = image(40);
    let cfg = write_config(img.dir.path(), &format!("{PROMPT}{RECOVERY}"));
    let first_file = img.dir.path().join("first.txt");
    let agent = Agent::start(img.dir.path(), &["pass-word", "pass-word"]);
    let f = first_file.display().to_string();
    json(&volctl(
        &["converge"],
        &img.path,
        &cfg,
        &agent,
        &["--recovery-key-out", &f],
        None,
    ));
    let read_key = |p: &Path| {
        let t = std::fs::read_to_string(p).unwrap();
        t.trim().rsplit(' ').next().unwrap().to_string()
    };
    let old_key = read_key(&first_file);
    drop(agent);

    let second_file = img.dir.path().join("second.txt");
    let s = second_file.display().to_string();
    let agent = Agent::start(img.dir.path(), &["pass-word"]);
    let v = json(&volctl(
        &["recovery-key", "rotate"],
        &img.path,
        &cfg,
        &agent,
        &["--recovery-key-out", &s],
        None,
    ));
    let new_key = read_key(&second_file);
    assert_ne!(new_key, old_key);
    assert!(opens(&img.path, 9, new_key.as_bytes()), "{v}");
    assert!(
        !opens_any(&img.path, old_key.as_bytes()),
        "the old key is gone"
    );
    assert!(opens(&img.path, 0, b"pass-word"));
    assert_eq!(slots(&img.path), [0, 9]);
    drop(agent);

    // With a prompt slot too, a mistyped recovery key is still caught by
    // its check group: not tried as a passphrase, no KDF run.
    let mut typo = new_key.clone().into_bytes();
    typo[0] = if typo[0] == b'A' { b'B' } else { b'A' };
    let agent = Agent::start(
        img.path.parent().unwrap(),
        &[std::str::from_utf8(&typo).unwrap(), &new_key],
    );
    let v = json(&volctl(&["plan"], &img.path, &cfg, &agent, &[], None));
    assert_eq!(v["kdf_runs"], 1, "{v}");
    assert_eq!(v["unlocked_by"], serde_json::json!([9, "recovery"]));
}

/// A booted node for `enable-encryption`: STATE is a directory holding the
/// config (STATE encrypted, persistence plain), persistence is `disk`.
fn node_with_plain_persistence(dir: &Path, disk: &Path) -> PathBuf {
    let state = dir.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(
        state.join("config.yaml"),
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      nodeID: {{}}\n---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\n"),
    )
    .unwrap();
    let status = dir.join("status.json");
    common::booted_status(&status, &state, &[("persistence", disk, false)]);
    status
}

#[test]
fn enable_encryption_formats_a_blank_partition_and_stages_one_that_holds_data() {
    let img = image(40);
    let status = node_with_plain_persistence(img.dir.path(), &img.path);
    let key_file = img.dir.path().join("recovery.txt");
    let agent = Agent::start(img.dir.path(), &["first-pass", "first-pass"]);
    let enable = |status: &Path, extra: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_volctl"))
            .args([
                "enable-encryption",
                "--volume",
                "persistence",
                "--status-file",
            ])
            .arg(status)
            .args(extra)
            .env("VOLCTL_NODE_UUID", UUID)
            .env("VOLCTL_ASK_PASSWORD_DIR", &agent.dir)
            .output()
            .unwrap()
    };
    let k = key_file.display().to_string();
    let o = enable(&status, &["--recovery-key", "--recovery-key-out", &k]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert_eq!(agent.questions().len(), 2, "asked twice");
    assert!(
        opens(&img.path, 0, b"first-pass"),
        "cryptsetup: the passphrase"
    );
    let key = std::fs::read_to_string(&key_file).unwrap();
    let key = key.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        opens(&img.path, 9, key.as_bytes()),
        "cryptsetup: the recovery key"
    );
    let config = img.dir.path().join("state/config.yaml");
    let v = Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(["validate", "-f"])
        .arg(&config)
        .output()
        .unwrap();
    assert!(v.status.success(), "{}", text(&v.stderr));
    assert!(std::fs::read_to_string(&config)
        .unwrap()
        .contains("prompt: {}"));

    // A partition that holds data: left as it is, the config staged.
    let data = image(40);
    assert!(Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&data.path)
        .status()
        .unwrap()
        .success());
    let before = std::fs::read(&data.path).unwrap();
    let status = node_with_plain_persistence(data.dir.path(), &data.path);
    let o = enable(&status, &[]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("nothing was written"),
        "{}",
        text(&o.stdout)
    );
    assert!(
        std::fs::read(&data.path).unwrap() == before,
        "byte-identical"
    );
    assert!(data.dir.path().join("state/config.pending.yaml").exists());
    assert!(
        !std::fs::read_to_string(data.dir.path().join("state/config.yaml"))
            .unwrap()
            .contains("prompt")
    );
}

#[test]
fn nobody_answering_ends_at_ask_timeout_with_a_clear_error_and_nothing_written() {
    let img = image(40);
    let cfg = write_config(img.dir.path(), PROMPT);
    // Agents would watch this folder; none does.
    let nobody = img.dir.path().join("ask");
    std::fs::create_dir(&nobody).unwrap();
    let started = std::time::Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(["converge", "--volume", "persistence", "--device"])
        .arg(&img.path)
        .arg("-f")
        .arg(&cfg)
        .args(["--ask-timeout", "1"])
        .env("VOLCTL_NODE_UUID", UUID)
        .env("VOLCTL_ASK_PASSWORD_DIR", &nobody)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = text(&out.stderr);
    assert!(
        err.contains("waiting for 1 s"),
        "the announcement says how long: {err}"
    );
    assert!(err.contains("nobody answered within 1 s"), "{err}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(60),
        "it did not wait for ever"
    );
    assert!(
        std::fs::read(&img.path).unwrap().iter().all(|&b| b == 0),
        "nothing was written"
    );
    assert_eq!(
        std::fs::read_dir(&nobody).unwrap().count(),
        0,
        "its question withdrawn"
    );
}
