//! The `volctl` binary: exit codes, output, and that nothing is written on error.

mod common;

use common::*;
use std::path::{Path, PathBuf};

fn repo(p: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(p)
        .display()
        .to_string()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn write_config(dir: &Path, body: &str) -> PathBuf {
    let p = dir.join("config.yaml");
    std::fs::write(&p, body).unwrap();
    p
}

const CFG: &str = "apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning: {diskSelector: {match: '!system_disk'}, maxSize: 1GiB}\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}\n  keys:\n    - slot: 0\n      static: {passphrase: cli-secret-pass}\n    - slot: 1\n      nodeID: {}\n      lockToSTATE: true\n";

#[test]
fn validate_accepts_examples_and_rejects_bad_files_with_exit_codes() {
    // Each example is a whole config (several -f files are one config).
    for example in ["examples/node.yaml", "examples/appliance.yaml"] {
        let ok = volctl(&["validate", "-f", &repo(example)]);
        assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
        assert!(text(&ok.stdout).contains("document(s) valid"));
    }

    let bad = repo("tests/corpus/bad/09-slot-out-of-range.yaml");
    let out = volctl(&["validate", "-f", &bad]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(err.contains("09-slot-out-of-range.yaml:8: error: document 1 (VolumeConfig \"EPHEMERAL\"): encryption.keys[0].slot: slot 32 is outside 0–31"), "{err}");

    let out = volctl(&["validate", "-f", &bad, "-o", "json"]);
    assert_eq!(out.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["valid"], false);
    assert_eq!(v["diagnostics"][0]["path"], "encryption.keys[0].slot");
    assert_eq!(v["diagnostics"][0]["line"], 8);

    let talos = volctl(&[
        "validate",
        "--talos",
        "-f",
        &repo("examples/appliance.yaml"),
    ]);
    assert_eq!(talos.status.code(), Some(0), "{}", text(&talos.stderr));
    assert!(
        text(&talos.stderr).contains("volctl-only"),
        "{}",
        text(&talos.stderr)
    );
    assert!(text(&talos.stdout).contains("volctl extension(s) used"));
    let talos = volctl(&[
        "validate",
        "--talos",
        "-f",
        &repo("tests/talos/VolumeConfig/06-state.yaml"),
    ]);
    assert!(
        text(&talos.stdout).contains("no volctl extension used"),
        "{}",
        text(&talos.stdout)
    );

    let usage = volctl(&["validate"]);
    assert_eq!(usage.status.code(), Some(2));
}

#[test]
fn schema_prints_json_for_all_or_one_kind() {
    let out = volctl(&["schema"]);
    assert!(out.status.success());
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["oneOf"].as_array().unwrap().len(), 5);
    let out = volctl(&["schema", "--kind", "UserVolumeConfig"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["properties"]["kind"]["const"], "UserVolumeConfig");
    assert!(v["properties"].get("filesystem").is_some());
    let out = volctl(&["schema", "--kind", "ExistingVolumeConfig"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(v["properties"].get("discovery").is_some());
}

#[test]
fn plan_detailed_exitcode_then_converge_then_nothing_to_do() {
    let img = image(40);
    let salt = img.dir.path().join("salt");
    std::fs::write(&salt, [3u8; 32]).unwrap();
    std::fs::set_permissions(&salt, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let cfg = write_config(img.dir.path(), CFG);
    let dev = img.path.display().to_string();
    let args = |cmd: &'static str| -> Vec<String> {
        vec![
            cmd.into(),
            "--volume".into(),
            "data".into(),
            "--device".into(),
            dev.clone(),
            "-f".into(),
            cfg.display().to_string(),
            "--state-salt-file".into(),
            salt.display().to_string(),
        ]
    };
    let run = |cmd: &'static str, extra: &[&str]| {
        let mut a: Vec<String> = args(cmd);
        a.extend(extra.iter().map(|s| s.to_string()));
        volctl(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    let before = sha256_file(&img.path);
    let p = run("plan", &["--detailed-exitcode"]);
    assert_eq!(p.status.code(), Some(2), "{}", text(&p.stderr));
    assert!(
        text(&p.stdout).contains("+ add slot 1 (nodeID, lockToState)"),
        "{}",
        text(&p.stdout)
    );
    assert_eq!(sha256_file(&img.path), before, "plan writes nothing");

    let c = run("converge", &[]);
    assert_eq!(c.status.code(), Some(0), "{}", text(&c.stderr));
    assert!(
        !text(&c.stdout).contains("cli-secret-pass")
            && !text(&c.stderr).contains("cli-secret-pass")
    );
    assert_eq!(slots(&img.path), vec![0, 1]);
    let mut salted = format!("{UUID}u-data").into_bytes();
    salted.extend([3u8; 32]);
    assert!(opens(&img.path, 1, &salted));

    let p = run("plan", &["--detailed-exitcode", "-o", "json"]);
    assert_eq!(p.status.code(), Some(0), "{}", text(&p.stderr));
    let v: serde_json::Value = serde_json::from_slice(&p.stdout).unwrap();
    assert_eq!(v["kdf_runs"], 1);
    assert_eq!(v["plan"]["actions"].as_array().unwrap().len(), 0);
}

#[test]
fn invalid_config_or_loose_salt_file_fails_and_writes_nothing() {
    let img = image(40);
    let dup = CFG.replace("slot: 1", "slot: 0");
    let cfg = write_config(img.dir.path(), &dup);
    let dev = img.path.display().to_string();
    let out = volctl(&[
        "converge",
        "--volume",
        "data",
        "--device",
        &dev,
        "-f",
        &cfg.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains(
            "encryption.keys[1].slot: duplicate key slot 0: already used by encryption.keys[0]"
        ),
        "{err}"
    );
    assert!(!is_luks(&img.path));

    let cfg = write_config(img.dir.path(), CFG);
    let salt = img.dir.path().join("salt");
    std::fs::write(&salt, [3u8; 32]).unwrap();
    std::fs::set_permissions(&salt, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = volctl(&[
        "converge",
        "--volume",
        "data",
        "--device",
        &dev,
        "-f",
        &cfg.display().to_string(),
        "--state-salt-file",
        &salt.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("must not be readable by group or others"),
        "{}",
        text(&out.stderr)
    );

    let out = volctl(&[
        "converge",
        "--volume",
        "data",
        "--device",
        "/nonexistent/disk",
        "-f",
        &cfg.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("cannot open /nonexistent/disk for writing"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn an_online_rotation_of_a_volume_the_boot_did_not_open_is_refused_and_nothing_is_written() {
    let img = image(40);
    let cfg = write_config(img.dir.path(), CFG);
    let status = img.dir.path().join("status.json");
    let mut st = controller::node::status::VolumeStatus::new("data", "u-data", true);
    st.device = Some(img.path.display().to_string());
    controller::node::status::BootStatus {
        volumes: vec![st],
        ..Default::default()
    }
    .save(&status)
    .unwrap();
    let before = sha256_file(&img.path);
    let args = [
        "rotate-volume-key",
        "--volume",
        "data",
        "-f",
        cfg.to_str().unwrap(),
        "--online",
        "--status-file",
        status.to_str().unwrap(),
    ];
    let out = volctl(&args);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("volume data is not open (rotate it offline with --device)"),
        "{}",
        text(&out.stderr)
    );
    let missing = img.dir.path().join("none.json");
    let out = volctl(&[&args[..6], &["--status-file", missing.to_str().unwrap()]].concat());
    assert!(
        text(&out.stderr).contains("has `volctl boot` run?"),
        "{}",
        text(&out.stderr)
    );
    assert_eq!(sha256_file(&img.path), before);
}

#[test]
fn status_of_one_volume_exits_0_when_it_is_ready_and_3_when_it_is_not() {
    use controller::node::status::{BootStatus, Phase, VolumeStatus};
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let mut ready = VolumeStatus::new("persistence", "persistence", true);
    ready.phase = Phase::Ready;
    let mut locked = VolumeStatus::new("data", "u-data", true);
    locked.phase = Phase::WaitingForKey;
    BootStatus {
        volumes: vec![ready, locked],
        // A problem of the boot's elsewhere does not make a ready volume not ready.
        problems: vec!["cannot read disk /dev/vdz".into()],
        ..Default::default()
    }
    .save(&status)
    .unwrap();
    let run = |volume: &str| {
        volctl(&[
            "status",
            "--volume",
            volume,
            "--status-file",
            status.to_str().unwrap(),
        ])
    };
    let ok = run("persistence");
    assert_eq!(ok.status.code(), Some(0), "{}", text(&ok.stderr));
    let shown = text(&ok.stdout);
    assert!(
        shown.contains("persistence") && !shown.contains("u-data"),
        "{shown}"
    );
    assert_eq!(run("data").status.code(), Some(3));
    let none = run("nothing");
    assert_eq!(none.status.code(), Some(1));
    assert!(
        text(&none.stderr).contains("no volume `nothing`"),
        "{}",
        text(&none.stderr)
    );
}

#[test]
fn completions_and_man_pages_come_from_the_command_line_itself() {
    for shell in ["bash", "zsh", "fish"] {
        let out = volctl(&["completion", shell]);
        assert!(out.status.success(), "{shell}: {}", text(&out.stderr));
        assert!(text(&out.stdout).contains("apply-config"), "{shell}");
    }
    let dir = tempfile::tempdir().unwrap();
    let out = volctl(&["man-pages", "--out", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let boot = std::fs::read_to_string(dir.path().join("volctl-boot.1")).unwrap();
    assert!(
        boot.contains(r"\-\-recovery\-key\-out"),
        "the page lists boot's flags (roff escapes -)"
    );
    assert!(dir.path().join("volctl.1").exists());
    assert!(
        !dir.path().join("volctl-keyslot-unlock.1").exists(),
        "hidden verbs have no page"
    );
}

#[test]
fn a_converge_that_could_not_enrol_a_configured_key_exits_4_naming_it() {
    let img = image(40);
    let cfg = write_config(img.dir.path(), CFG);
    let salt = img.dir.path().join("salt");
    let converge = |with_salt: bool| {
        let mut args = vec![
            "converge".to_string(),
            "--volume".into(),
            "data".into(),
            "--device".into(),
            img.path.display().to_string(),
            "-f".into(),
            cfg.display().to_string(),
        ];
        if with_salt {
            args.extend(["--state-salt-file".into(), salt.display().to_string()]);
        }
        volctl(&args.iter().map(String::as_str).collect::<Vec<_>>())
    };
    // No STATE salt: the lockToSTATE key of slot 1 cannot be made.
    let c = converge(false);
    assert_eq!(c.status.code(), Some(4), "{}", text(&c.stderr));
    let err = text(&c.stderr);
    assert!(
        err.lines()
            .any(|l| l.starts_with("incomplete: data: slot 1 (nodeID)")),
        "{err}"
    );
    assert_eq!(
        slots(&img.path),
        vec![0],
        "formatted with the key that could be made"
    );
    // With the salt, the next run completes it.
    std::fs::write(&salt, [3u8; 32]).unwrap();
    std::fs::set_permissions(&salt, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let c = converge(true);
    assert_eq!(c.status.code(), Some(0), "{}", text(&c.stderr));
    assert_eq!(slots(&img.path), vec![0, 1]);
}

#[test]
fn a_blank_device_is_not_formatted_when_only_its_recovery_key_can_be_made() {
    let img = image(40);
    let only_recovery_now = "apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning: {diskSelector: {match: '!system_disk'}, maxSize: 1GiB}\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}\n  keys:\n    - slot: 0\n      nodeID: {}\n      lockToSTATE: true\n    - slot: 9\n      recovery: {}\n";
    let cfg = write_config(img.dir.path(), only_recovery_now);
    let out_file = img.dir.path().join("recovery.txt");
    let before = sha256_file(&img.path);
    let converge = |extra: &[&str]| {
        let mut args = vec![
            "converge",
            "--volume",
            "data",
            "--device",
            img.path.to_str().unwrap(),
            "-f",
            cfg.to_str().unwrap(),
            "--recovery-key-out",
            out_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        volctl(&args)
    };
    let c = converge(&[]);
    assert_eq!(c.status.code(), Some(1), "{}", text(&c.stderr));
    let err = text(&c.stderr);
    assert!(
        err.contains("only its recovery key") && err.contains("slot 0 (nodeID)"),
        "{err}"
    );
    assert_eq!(sha256_file(&img.path), before, "nothing written");
    assert!(
        err.contains("--allow-incomplete"),
        "the way out is named: {err}"
    );
    assert!(!out_file.exists(), "no empty key file left behind");

    // Told to: formatted with the recovery key alone, exit 4 naming the
    // key left out; the recovery key opens it (cryptsetup).
    let c = converge(&["--allow-incomplete"]);
    assert_eq!(c.status.code(), Some(4), "{}", text(&c.stderr));
    assert!(
        text(&c.stderr).contains("incomplete: data: slot 0 (nodeID)"),
        "{}",
        text(&c.stderr)
    );
    assert_eq!(slots(&img.path), vec![9]);
    let key = std::fs::read_to_string(&out_file).unwrap();
    let key = key.trim().rsplit(' ').next().unwrap();
    assert!(
        opens(&img.path, 9, key.as_bytes()),
        "the recovery key opens it"
    );
}

#[test]
fn meta_takes_tags_in_hex_as_the_docs_write_them_and_a_local_verb_is_named_as_typed() {
    let dir = tempfile::tempdir().unwrap();
    let meta = dir.path().join("meta.img");
    std::fs::File::create(&meta)
        .unwrap()
        .set_len(1 << 20)
        .unwrap();
    let dev = meta.to_str().unwrap();
    let set = volctl(&["meta", "--device", dev, "set", "0xc0", "hello"]);
    assert!(set.status.success(), "{}", text(&set.stderr));
    let get = volctl(&["meta", "--device", dev, "get", "192"]);
    assert!(get.status.success(), "{}", text(&get.stderr));
    assert_eq!(text(&get.stdout).trim(), "hello");
    let bad = volctl(&["meta", "--device", dev, "get", "0xzz"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        text(&bad.stderr).contains("hex like 0xc0"),
        "{}",
        text(&bad.stderr)
    );
    let remote = volctl(&[
        "-n",
        "127.0.0.1:1",
        "rotate-volume-key",
        "--volume",
        "data",
        "-f",
        "x.yaml",
    ]);
    assert_eq!(remote.status.code(), Some(1));
    let err = text(&remote.stderr);
    assert!(
        err.contains("`rotate-volume-key` runs on the node itself"),
        "{err}"
    );
}

#[test]
fn a_reader_that_goes_away_ends_volctl_quietly_not_with_a_panic() {
    use controller::node::status::{BootStatus, VolumeStatus};
    use std::io::Read;
    let dir = tempfile::tempdir().unwrap();
    let status = dir.path().join("status.json");
    let volumes = (0..5000)
        .map(|i| VolumeStatus::new(&format!("v{i}"), "l", true))
        .collect();
    BootStatus {
        volumes,
        ..Default::default()
    }
    .save(&status)
    .unwrap();
    // `volctl status | head -c 10`: the reader takes a little and leaves.
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(["status", "--status-file", status.to_str().unwrap()])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = [0u8; 10];
    child.stdout.take().unwrap().read_exact(&mut first).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(141), "{}", text(&out.stderr));
    assert!(out.stderr.is_empty(), "{}", text(&out.stderr));
}

#[test]
fn help_groups_the_client_flags_under_their_own_heading() {
    let o = volctl(&["status", "--help"]);
    assert!(o.status.success());
    let help = text(&o.stdout);
    let heading = help
        .find("Remote (with -n/--nodes):")
        .unwrap_or_else(|| panic!("{help}"));
    for flag in [
        "--nodes",
        "--ca",
        "--cert",
        "--volctlconfig",
        "--api-key-file",
    ] {
        let at = help.find(flag).unwrap_or_else(|| panic!("{flag}: {help}"));
        assert!(at > heading, "{flag} is under the remote heading:\n{help}");
    }
    assert!(
        help.find("--volume").unwrap() < heading,
        "the verb's own flags first"
    );
}

#[test]
fn only_the_verbs_that_run_remotely_take_the_client_flags() {
    for verb in [
        &["serve"][..],
        &["gen"],
        &["kms-server"],
        &["converge"],
        &["boot"],
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let help = text(&volctl(&args).stdout);
        assert!(help.contains("Usage:"), "{help}");
        assert!(!help.contains("--nodes"), "{verb:?}: {help}");
        assert!(!help.contains("Remote (with"), "{verb:?}: {help}");
    }
    for verb in [
        &["status"][..],
        &["recovery-key", "fetch"],
        &["apply-config"],
    ] {
        let mut args = verb.to_vec();
        args.push("--help");
        let help = text(&volctl(&args).stdout);
        assert!(
            help.contains("Remote (with -n/--nodes):"),
            "{verb:?}: {help}"
        );
    }
    // After the verb: clap refuses a flag the verb does not take.
    let o = volctl(&["converge", "-n", "10.0.0.5"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    // Before the verb, without -n: refused, not ignored.
    let o = volctl(&["--ca", "ca.crt", "status"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o.stderr).contains("--ca is a client flag, for `volctl -n NODE …`; without -n, `status` runs on this machine"),
        "{}",
        text(&o.stderr)
    );
    // The flags after a remote verb reach the call.
    let o = volctl(&["status", "-n", "127.0.0.1:1", "--timeout", "1"]);
    assert!(
        text(&o.stderr).contains("no CA to verify the node by"),
        "{}",
        text(&o.stderr)
    );
}

#[test]
fn a_long_kdf_shows_its_time_on_a_terminal_and_nothing_off_it() {
    let dir = tempfile::tempdir().unwrap();
    let img = dir.path().join("disk.img");
    std::fs::File::create(&img)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    // A KDF that takes about a second here: longer than the quiet time.
    let cfg = dir.path().join("c.yaml");
    std::fs::write(
        &cfg,
        CFG.replace(
            "memoryKiB: 32, iterations: 4",
            "memoryKiB: 262144, iterations: 6",
        )
        .replace(
            "    - slot: 1\n      nodeID: {}\n      lockToSTATE: true\n",
            "",
        ),
    )
    .unwrap();
    let line = format!(
        "{} converge --volume data --device {} -f {}",
        env!("CARGO_BIN_EXE_volctl"),
        img.display(),
        cfg.display()
    );
    // `script`: volctl's stderr is a terminal.
    let o = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .output()
        .unwrap();
    let screen = text(&o.stdout);
    assert!(o.status.success(), "{screen}");
    assert!(
        screen.contains("KDF: add keyslot (") && screen.contains(" s\r\x1b[2K"),
        "a line, then wiped: {screen:?}"
    );
    assert!(screen.contains("converged volume data"), "{screen}");
    // Off a terminal (a pipe, the journal): not a byte of it.
    let o = volctl(&[
        "plan",
        "--volume",
        "data",
        "--device",
        img.to_str().unwrap(),
        "-f",
        cfg.to_str().unwrap(),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(!text(&o.stderr).contains("KDF:"), "{}", text(&o.stderr));
    assert!(!text(&o.stdout).contains("KDF:"), "{}", text(&o.stdout));
}
