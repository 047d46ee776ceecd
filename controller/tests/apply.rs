//! `volctl apply-config` on the host: a LUKS2 volume in an image file stands
//! for an open volume (the boot status points at it), a directory stands for
//! STATE's mount point. Nothing is stored unless the config is valid and
//! safe.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

struct Node {
    _dir: tempfile::TempDir,
    root: PathBuf,
    status: PathBuf,
    state: PathBuf,
    ephemeral: PathBuf,
}

fn yaml(keys: &[&str]) -> String {
    let mut y = format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n");
    for k in keys {
        y.push_str(&format!("    - {k}\n"));
    }
    y
}

/// A "booted" node: EPHEMERAL converged to {slot 0 static old-pass}.
fn node() -> Node {
    let img = image(40);
    apply(
        &config(&["{slot: 0, static: {passphrase: old-pass}}"]),
        &img.path,
    );
    let root = img.dir.path().to_path_buf();
    let state = root.join("state");
    std::fs::create_dir_all(&state).unwrap();
    std::fs::write(state.join("config.yaml"), "the config in force\n").unwrap();
    let status = root.join("run/status.json");
    booted_status(&status, &state, &[("EPHEMERAL", &img.path, true)]);
    let ephemeral = img.path.clone();
    Node {
        _dir: img.dir,
        root,
        status,
        state,
        ephemeral,
    }
}

impl Node {
    fn apply_config(&self, body: &str, args: &[&str]) -> Output {
        let f = self.root.join("new.yaml");
        std::fs::write(&f, body).unwrap();
        // A disk image with a META partition, so no-reboot can mirror STATE's config.
        let disk = self.root.join("meta-disk.img");
        if !disk.exists() {
            std::fs::File::create(&disk)
                .unwrap()
                .set_len(8 << 20)
                .unwrap();
            assert!(Command::new("sgdisk")
                .args(["-n1:0:+2M", "-c1:META"])
                .arg(&disk)
                .stdout(std::process::Stdio::null())
                .status()
                .unwrap()
                .success());
        }
        Command::new(env!("CARGO_BIN_EXE_volctl"))
            .args(["apply-config", "-f"])
            .arg(&f)
            .args([
                "--status-file",
                &self.status.display().to_string(),
                "--disk",
                &disk.display().to_string(),
            ])
            .args(args)
            .env("VOLCTL_NODE_UUID", UUID)
            .env(
                "VOLCTL_REBOOT_COMMAND",
                format!("touch {}", self.root.join("rebooted").display()),
            )
            .output()
            .unwrap()
    }

    fn stored(&self) -> (String, bool) {
        (
            std::fs::read_to_string(self.state.join("config.yaml")).unwrap(),
            self.state.join("config.pending.yaml").exists(),
        )
    }
}

fn text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn invalid_config_is_rejected_and_nothing_is_stored() {
    let n = node();
    let before = sha256_file(&n.ephemeral);
    let o = n.apply_config(
        &yaml(&["{slot: 40, static: {passphrase: x}}"]),
        &["--mode", "staged"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("nothing was stored") && text(&o).contains("slot 40 is outside 0–31"),
        "{}",
        text(&o)
    );
    assert_eq!(n.stored(), ("the config in force\n".into(), false));
    assert_eq!(sha256_file(&n.ephemeral), before);
}

#[test]
fn a_config_whose_keys_open_nothing_is_refused() {
    let n = node();
    let before = sha256_file(&n.ephemeral);
    let o = n.apply_config(
        &yaml(&["{slot: 2, static: {passphrase: new-pass}}"]),
        &["--mode", "auto"],
    );
    assert_eq!(o.status.code(), Some(1));
    let t = text(&o);
    assert!(
        t.contains("none of the keys in this config opens the volume") && t.contains("0 (static)"),
        "{t}"
    );
    assert_eq!(n.stored(), ("the config in force\n".into(), false));
    assert_eq!(sha256_file(&n.ephemeral), before);
}

#[test]
fn staged_stores_a_private_pending_config_and_changes_no_volume() {
    let n = node();
    let before = sha256_file(&n.ephemeral);
    let body = yaml(&[
        "{slot: 0, static: {passphrase: old-pass}}",
        "{slot: 2, static: {passphrase: new-pass}}",
    ]);
    let o = n.apply_config(&body, &["--mode", "staged"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("+ add slot 2 (static)")
            && text(&o).contains("takes effect at the next boot"),
        "{}",
        text(&o)
    );
    let pending = n.state.join("config.pending.yaml");
    assert_eq!(std::fs::read_to_string(&pending).unwrap(), body);
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pending).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(sha256_file(&n.ephemeral), before);

    // --mode reboot stages too, then runs the reboot command.
    let o = n.apply_config(&body, &["--mode", "reboot"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(n.root.join("rebooted").exists());
}

#[test]
fn no_reboot_adds_keys_now_and_dry_run_changes_nothing() {
    let n = node();
    let body = yaml(&[
        "{slot: 0, static: {passphrase: old-pass}}",
        "{slot: 2, static: {passphrase: new-pass}}",
    ]);
    let before = sha256_file(&n.ephemeral);
    let o = n.apply_config(&body, &["--dry-run"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("dry run (no-reboot): nothing stored"),
        "{}",
        text(&o)
    );
    assert_eq!(sha256_file(&n.ephemeral), before);

    let o = n.apply_config(&body, &["--mode", "auto"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("applied now"), "{}", text(&o));
    assert_eq!(slots(&n.ephemeral), vec![0, 2]);
    assert!(opens(&n.ephemeral, 2, b"new-pass"));
    assert_eq!(n.stored(), (body, false));
}

#[test]
fn insecure_outside_maintenance_mode_is_refused() {
    let n = node();
    let o = n.apply_config(
        &yaml(&["{slot: 0, static: {passphrase: old-pass}}"]),
        &["--insecure"],
    );
    assert_eq!(o.status.code(), Some(1));
    assert!(
        text(&o).contains("only delivers a config to a boot waiting in maintenance mode"),
        "{}",
        text(&o)
    );
    assert!(!Path::new(&n.root.join("run/maintenance-config.yaml")).exists());
}
