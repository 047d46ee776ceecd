//! KDF workers (controller::device::kdf_worker), on real LUKS2 headers:
//! `volctl keyslot-unlock` hands back the volume key `cryptsetup` shows and
//! nothing for a wrong passphrase; a process that uses workers unlocks by
//! one KDF run in a worker, and refuses a key a worker makes up.

mod common;

use common::{apply, config, env, image, run, text, volume_key};
use controller::converge::Mode;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

const KEY: &str = "slot: 0\n      static: {passphrase: worker-pass}";

fn keyslot_unlock(header: &Path, passphrase: &[u8]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(["keyslot-unlock", "--header"])
        .arg(header)
        .args(["--slot", "0", "--key-size", "64"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(passphrase).unwrap();
    c.wait_with_output().unwrap()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[test]
fn a_worker_hands_back_the_key_cryptsetup_shows_and_nothing_for_a_wrong_passphrase() {
    let img = image(40);
    apply(&config(&[KEY]), &img.path);
    let out = keyslot_unlock(&img.path, b"worker-pass");
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        hex(&out.stdout),
        volume_key(&img.path, 0, b"worker-pass"),
        "the worker's key is the volume key"
    );
    let wrong = keyslot_unlock(&img.path, b"not-the-pass");
    assert_eq!(wrong.status.code(), Some(3), "{}", text(&wrong.stderr));
    assert!(wrong.stdout.is_empty());
}

#[test]
fn with_workers_an_unlock_runs_its_one_kdf_in_a_worker_and_checks_the_key_it_gets() {
    // A worker wrapper that logs each start and, while `lie` exists, hands
    // back a key of the right size that is not the volume key.
    let dir = tempfile::tempdir().unwrap();
    let (log, lie) = (dir.path().join("starts"), dir.path().join("lie"));
    let wrapper = dir.path().join("worker.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho start >> '{}'\nif [ -e '{}' ]; then cat > /dev/null; head -c 64 /dev/urandom; exit 0; fi\nexec '{}' \"$@\"\n",
            log.display(),
            lie.display(),
            env!("CARGO_BIN_EXE_volctl")
        ),
    )
    .unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o700),
    )
    .unwrap();
    let img = image(40);
    let spec = config(&[KEY]);
    apply(&spec, &img.path);
    controller::device::kdf_worker::use_workers(wrapper.clone());

    let o = run(&spec, &img.path, &env(), Mode::DryRun).unwrap();
    assert_eq!(o.kdf_runs, 1);
    assert_eq!(
        std::fs::read_to_string(&log).unwrap().lines().count(),
        1,
        "one worker started"
    );

    std::fs::write(&lie, "").unwrap();
    let e = run(&spec, &img.path, &env(), Mode::DryRun).unwrap_err();
    let chain = format!("{e:#}");
    let text = std::iter::successors(Some(&e as &dyn std::error::Error), |e| e.source())
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(": ");
    assert!(text.contains("does not verify"), "{chain} / {text}");

    // A worker that fails (here: exits 1 at once) costs nothing but time:
    // the KDF runs in-process.
    std::fs::remove_file(&lie).unwrap();
    std::fs::write(
        &wrapper,
        "#!/bin/sh
exit 1\n",
    )
    .unwrap();
    let o = run(&spec, &img.path, &env(), Mode::DryRun).unwrap();
    assert_eq!(o.kdf_runs, 1);
}
