//! The node API driven from the host.

use super::harness::*;
use std::process::Command;

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn the_seed_workflow_driven_from_the_host_over_the_node_api() {
    let mut vm = Vm::new("node-api", LAYOUT);
    let pki = vm.node_api_pki();
    let host = |name: &str, body: &str| {
        let p = vm.dir.join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let plain_ephemeral = config_with_ephemeral(&[OLD]).replacen(
        &format!("name: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {{type: argon2id, memoryKiB: 1024, iterations: 4}}\n  keys:\n    - {OLD}\n"),
        "name: EPHEMERAL\n",
        1,
    );
    assert!(!plain_ephemeral.contains("old-pass"));
    let c1 = host("c1.yaml", &plain_ephemeral);
    let c2 = host("c2.yaml", &config_with_ephemeral(&[OLD]));
    let c3 = host("c3.yaml", &config_with_ephemeral(&[OLD, NEW]));
    let c4 = host("c4.yaml", &config_with_ephemeral(&[NEW]));

    // Boot 1: a blank disk, no config: maintenance mode on the network. The
    // admin delivers the config (the node's certificate is self-signed; the
    // client shows its fingerprint), the boot goes on with it. Then: stage
    // encrypting EPHEMERAL, and wipe it with a reboot (it is in use, STATE
    // is mounted below it: the wipe is done by the next boot, first).
    let mut seen_fingerprint = String::new();
    let b = vm.serve_boot(&pki, |admin| {
        let o = admin.when_up(&["apply-config", "--insecure", "-f", &c1]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        seen_fingerprint = text(&o.stderr)
            .split("fingerprint ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        let st = admin.when_up(&["status", "-o", "json"]);
        assert!(st.status.success(), "{}", text(&st.stderr));
        let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        assert_eq!(
            v["config_source"],
            "maintenance mode (apply-config --insecure)"
        );
        let now = admin.volctl(&["apply-config", "-f", &c2, "--mode", "no-reboot"]);
        assert!(
            !now.status.success() && text(&now.stderr).contains("needs a wipe"),
            "{}",
            text(&now.stderr)
        );
        let staged = admin.ok(&["apply-config", "-f", &c2, "--mode", "staged"]);
        assert!(staged.contains("EPHEMERAL: needs a wipe"), "{staged}");
        let reset = admin.ok(&["reset", "--system-labels-to-wipe", "EPHEMERAL", "--reboot"]);
        assert!(reset.contains("wiped at the next boot"), "{reset}");
    });
    assert!(
        b.log.contains(&format!("fingerprint {seen_fingerprint}")),
        "the console showed the fingerprint the admin saw: {seen_fingerprint}\n{}",
        b.log
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("STATE")["encrypted"], true);
    assert_eq!(b.volume("persistence")["encrypted"], true);
    assert_eq!(b.volume("EPHEMERAL")["encrypted"], false);

    // Boot 2: EPHEMERAL wiped first, then encrypted; rotation step 1 with a reboot.
    let b = vm.serve_boot(&pki, |admin| {
        admin.when_up(&["version"]);
        admin.ok(&["apply-config", "-f", &c3, "--mode", "reboot"]);
    });
    assert!(b.all_ready(), "{}", b.log);
    assert!(
        b.status["wiped"][0]
            .as_str()
            .unwrap_or_default()
            .starts_with("wiped EPHEMERAL"),
        "{}",
        b.status
    );
    assert_eq!(b.volume("EPHEMERAL")["encrypted"], true);
    assert_eq!(
        b.volume("EPHEMERAL")["created"],
        true,
        "new and empty after its wipe"
    );

    // Boot 3: the new key enrolled; rotation step 2.
    let b = vm.serve_boot(&pki, |admin| {
        admin.when_up(&["version"]);
        // A reader may look, not change.
        let o = Command::new(env!("CARGO_BIN_EXE_volctl"))
            .args(["-n", &admin.node, "--volctlconfig"])
            .arg(pki.join("reader.volctlconfig"))
            .args(["apply-config", "-f", &c4, "--mode", "reboot"])
            .output()
            .unwrap();
        assert!(
            text(&o.stderr).contains("needs the admin role"),
            "{}",
            text(&o.stderr)
        );
        admin.ok(&["apply-config", "-f", &c4, "--mode", "reboot"]);
    });
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.keyslots("EPHEMERAL"), vec![0, 2]);

    // Boot 4: the old key is gone (checked on the host); STATE re-provisioned:
    // wiped with a reboot…
    let b = vm.serve_boot(&pki, |admin| {
        admin.when_up(&["version"]);
        admin.ok(&["reset", "--system-labels-to-wipe", "STATE", "--reboot"]);
    });
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.keyslots("EPHEMERAL"), vec![2]);
    assert!(
        !vm.opens("EPHEMERAL", 0, b"old-pass"),
        "the old key no longer opens"
    );
    assert!(vm.opens("EPHEMERAL", 2, b"new-pass"));

    // Boot 5: …so the node waits in maintenance mode (a fresh certificate
    // each time) and takes the config from the admin, who pins the
    // fingerprint this time.
    let b = vm.serve_boot(&pki, |admin| {
        let o = admin.when_up(&["apply-config", "--insecure", "--dry-run", "-f", &c4]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        let fp = text(&o.stderr)
            .split("fingerprint ")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_default()
            .to_string();
        admin.ok(&[
            "apply-config",
            "--insecure",
            "--fingerprint",
            &fp,
            "-f",
            &c4,
        ]);
        admin.when_up(&["version"]);
    });
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("STATE")["created"], true);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([2, "static"])
    );
    vm.summary("all from the host: maintenance → config; staged + reset; rotation ×2 with reboots; STATE wipe → maintenance");
}
