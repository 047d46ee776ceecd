//! The appliance: a passphrase typed at the console, the recovery key.

use super::harness::*;
use std::process::Command;
use std::time::Instant;

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn appliance_passphrase_typed_at_the_console_and_the_recovery_key() {
    const PASS: &str = "correct horse battery";
    let mut vm = Vm::new("appliance-typed-keys", LAYOUT);
    vm.write("config.yaml", APPLIANCE);
    let pki = vm.node_api_pki();

    // First boot: asked twice on the serial console; nobody is given the
    // recovery key, so the boot holds it for one fetch (a second is refused).
    let b = vm.boot_typing(
        "",
        "-f /job/config.yaml",
        "echo kept > /persistence/f; echo 'BEGIN key'; volctl recovery-key fetch --volume persistence 2>/dev/null; echo 'END key'; echo 'BEGIN again'; volctl recovery-key fetch --volume persistence 2>&1 | grep -c 'no recovery key is held'; echo 'END again'; mkdir -p /var/lib/volctl/state/api; cp /job/api/* /var/lib/volctl/state/api/",
        &[
            ("New passphrase for persistence:", PASS),
            ("Repeat the passphrase for persistence:", PASS),
        ],
    );
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    assert!(b.all_ready(), "{}", b.status);
    assert_eq!(b.volume("persistence")["created"], true);
    let key = b.section("key");
    assert!(key.trim().starts_with("persistence slot 9: "), "{key}");
    assert_eq!(b.section("again").trim(), "1", "fetched once only");
    let key = key.trim().rsplit(' ').next().unwrap().to_string();
    assert!(
        vm.opens("persistence", 0, PASS.as_bytes()),
        "host cryptsetup: the passphrase"
    );
    assert!(
        vm.opens("persistence", 9, key.as_bytes()),
        "host cryptsetup: the recovery key"
    );
    assert!(
        !b.log.replace(&key, "").contains(PASS),
        "the passphrase was never echoed"
    );
    let header = vm.header("persistence");

    // Three wrong answers: persistence waits for its key, the others are up,
    // nothing was written to its header.
    let wrong = [
        ("for persistence:", "wrong-1"),
        ("for persistence:", "wrong-2"),
        ("for persistence:", "wrong-3"),
    ];
    let b = vm.boot_typing("", "", "", &wrong);
    assert_eq!(b.boot_rc, 3, "{}", b.log);
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.phase("EPHEMERAL"), "ready");
    assert_eq!(b.phase("persistence"), "waiting-for-key", "{}", b.status);
    let err = b.volume("persistence")["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(err.contains("3 wrong"), "{err}");
    assert_eq!(vm.header("persistence"), header, "nothing written");

    // The passphrase forgotten: the recovery key, typed sloppily, opens it.
    let sloppy = key.to_lowercase().replace('-', " ");
    let b = vm.boot_typing(
        "",
        "",
        "echo 'BEGIN files'; cat /persistence/f; echo 'END files'",
        &[("Passphrase (or recovery key) for persistence:", &sloppy)],
    );
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    assert_eq!(
        b.volume("persistence")["unlocked_by"],
        serde_json::json!([9, "recovery"])
    );
    assert_eq!(b.volume("persistence")["kdf_runs"], 1);
    assert_eq!(b.section("files"), "kept\n");

    // Daily boot: the passphrase, one KDF run.
    let b = vm.boot_typing("", "", "", &[("for persistence:", PASS)]);
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    assert_eq!(
        b.volume("persistence")["unlocked_by"],
        serde_json::json!([0, "prompt"])
    );
    assert_eq!(b.volume("persistence")["kdf_runs"], 1);
    assert_eq!(
        vm.header("persistence"),
        header,
        "no header write at unlock"
    );

    // Nobody at the console: the admin answers over the node API (its
    // certificate is on STATE, which opened unattended).
    let port = vm.forward_node_api();
    let admin = {
        let config = pki.join("admin.volctlconfig");
        std::thread::spawn(move || {
            let deadline = Instant::now() + std::time::Duration::from_secs(120);
            loop {
                let mut c = Command::new(env!("CARGO_BIN_EXE_volctl"))
                    .args(["-n", &format!("127.0.0.1:{port}"), "--volctlconfig"])
                    .arg(&config)
                    .args(["unlock", "--volume", "persistence"])
                    .stdin(std::process::Stdio::piped())
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .unwrap();
                use std::io::Write;
                c.stdin
                    .take()
                    .unwrap()
                    .write_all(format!("{PASS}\n").as_bytes())
                    .unwrap();
                let o = c.wait_with_output().unwrap();
                if o.status.success() || Instant::now() > deadline {
                    return o;
                }
                std::thread::sleep(std::time::Duration::from_millis(500));
            }
        })
    };
    let b = vm.boot_with(GUEST_NET, "", "");
    let unlocked = admin.join().unwrap();
    assert!(unlocked.status.success(), "{}", text(&unlocked.stderr));
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    assert_eq!(
        b.volume("persistence")["unlocked_by"],
        serde_json::json!([0, "prompt"])
    );
    assert!(!b.log.contains(PASS), "the passphrase is in no log line");
    vm.summary("prompt asked twice at first boot; 3 wrong → waiting-for-key; recovery key; daily boot; remote unlock");
}
