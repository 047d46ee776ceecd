//! A real Debian 12 booted with systemd as PID 1, volctl installed from its
//! package (`dpkg -i`), its initramfs made by `update-initramfs` inside the
//! image (tests/vm/debian-systemd.sh): the units, systemd's own password
//! agent on the console, a service ordered after a volume, and the
//! initramfs hook opening the volume before `switch_root`.

use super::harness::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const PASS: &str = "debian systemd pass";

/// META, STATE and the appliance's persistence, on the data disk (/dev/vda);
/// the Debian root is /dev/vdc.
const DEBIAN_LAYOUT: &[(&str, u64)] = &[("META", 1), ("STATE", 64), ("persistence", 0)];

/// Which initramfs the Debian root boots with.
#[derive(Clone, Copy)]
enum Initrd {
    /// volctl's hook off: systemd's volctl-boot.service opens the volumes.
    Systemd,
    /// volctl's hook on: the initramfs opens them before `switch_root`.
    Volctl,
}

/// The package `make deb` wrote (built now when there is none).
fn package() -> PathBuf {
    let find = || {
        std::fs::read_dir(root().join("target/debian"))
            .ok()?
            .flatten()
            .map(|e| e.path())
            .find(|p| p.extension().is_some_and(|e| e == "deb"))
    };
    if let Some(deb) = find() {
        return deb;
    }
    let st = Command::new("bash")
        .arg(root().join("scripts/build-deb.sh"))
        .status()
        .unwrap();
    assert!(st.success(), "make deb");
    find().expect("the package")
}

/// Builds the Debian root and its two initramfs images in the VM's folder.
fn debian_images(vm: &Vm) -> PathBuf {
    let out = vm.dir.join("debian");
    let o = Command::new(root().join("tests/vm/debian-systemd.sh"))
        .arg(&out)
        .arg(package())
        .arg(root().join("tests/vm/debian/config.yaml"))
        .output()
        .unwrap();
    assert!(o.status.success(), "{}{}", text(&o.stdout), text(&o.stderr));
    let mode = std::fs::read_to_string(out.join("initrd.mode")).unwrap();
    assert!(
        mode.starts_with("600 "),
        "the initramfs holding the config is root's only: {mode}"
    );
    out
}

/// What one boot of the Debian root showed.
struct DebianBoot {
    log: String,
    status: serde_json::Value,
}

impl DebianBoot {
    fn volume(&self, name: &str) -> &serde_json::Value {
        self.status["volumes"]
            .as_array()
            .and_then(|v| v.iter().find(|v| v["name"] == name))
            .unwrap_or_else(|| panic!("no volume {name} in {}\n{}", self.status, self.log))
    }
    /// One property of a unit, as `systemctl show` prints it.
    fn unit(&self, unit: &str, property: &str) -> String {
        section(&self.log, &format!("unit {unit}"))
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{property}=")))
            .unwrap_or_default()
            .to_string()
    }
    fn monotonic(&self, unit: &str, property: &str) -> u64 {
        self.unit(unit, property).parse().unwrap_or(0)
    }
    /// Whether the web UI started, and after persistence was mounted.
    fn web_ui_after_mount(&self) -> bool {
        let mounted = self.monotonic("persistence.mount", "ActiveEnterTimestampMonotonic");
        let started = self.monotonic("webui.service", "ExecMainStartTimestampMonotonic");
        self.unit("webui.service", "ActiveState") == "active" && mounted > 0 && started > mounted
    }
}

/// Boots the Debian root once, typing on its console.
fn boot_debian(vm: &mut Vm, images: &Path, initrd: Initrd, typing: &[(&str, &str)]) -> DebianBoot {
    let initrd = match initrd {
        Initrd::Systemd => "initrd-systemd.img",
        Initrd::Volctl => "initrd-volctl.img",
    };
    let mut cmd = vm.run_command();
    cmd.env("VOLCTL_VM_INITRD", images.join(initrd)).env(
        "VOLCTL_VM_APPEND",
        "console=ttyS0 root=/dev/vdc rw panic=-1 cryptomgr.notests quiet loglevel=3 systemd.show_status=1",
    );
    let (ok, log, stderr) = type_on_console(cmd, &vm.dir.join("console.sock"), typing);
    vm.keep_log(&log);
    assert!(ok, "the Debian VM run failed: {stderr}\n{log}");
    let status = serde_json::from_str(&section(&log, "status")).unwrap_or_default();
    DebianBoot { log, status }
}

/// The node API's certificate on STATE, `volctl serve` started, the same
/// package installed again with `dpkg -i` (an upgrade), serve's process
/// before and after. The `update-initramfs` trigger is left for later
/// (`--no-triggers`): it costs a minute of the VM's time and proves
/// nothing here.
const UPGRADE_WHILE_SERVING: &str = "mkdir -p /var/lib/volctl/state/api && cp /run/job/api/* /var/lib/volctl/state/api/
chmod 600 /var/lib/volctl/state/api/server.key
systemctl start volctl-serve.service
echo 'BEGIN serve-before'; systemctl show -p MainPID -p ActiveState volctl-serve.service; echo 'END serve-before'
echo 'BEGIN upgrade'; dpkg -i --no-triggers /run/job/volctl.deb >/dev/null 2>&1; echo \"dpkg $?\"; echo 'END upgrade'
echo 'BEGIN serve-after'; systemctl show -p MainPID -p ActiveState volctl-serve.service; echo 'END serve-after'
";

/// sha256 of the partition labelled `label`, read on the host.
fn partition_sum(vm: &Vm, label: &str) -> String {
    let p = vm.partition(label);
    let o = Command::new("sha256sum").arg(p.path()).output().unwrap();
    text(&o.stdout).split(' ').next().unwrap().to_string()
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn debian_systemd_boots_the_package_s_units_and_initramfs() {
    let mut vm = Vm::new("debian-systemd", DEBIAN_LAYOUT);
    vm.timeout = 400;
    let images = debian_images(&vm);
    vm.qemu_extra = format!(
        "-drive file={},format=raw,if=virtio,cache=unsafe",
        images.join("root.img").display()
    );
    vm.write("job.sh", include_str!("../../../tests/vm/debian/report.sh"));
    first_boot(&mut vm, &images);
    daily_boot_then_an_upgrade(&mut vm, &images);
    three_wrong_passphrases(&mut vm, &images);
    the_initramfs_path(&mut vm, &images);
    vm.summary("Debian 12 + systemd: package units, systemd's agent, web UI after the volume, 3 wrong → no web UI, initramfs hook");
}

/// Boot 1, the first: volctl-boot.service lays nothing out (the partitions
/// are there), formats persistence with the passphrase typed twice at
/// systemd's console agent; the web UI starts after the mount.
fn first_boot(vm: &mut Vm, images: &Path) {
    let b = boot_debian(
        vm,
        images,
        Initrd::Systemd,
        &[
            ("New passphrase for persistence", PASS),
            ("Repeat the passphrase for persistence", PASS),
        ],
    );
    assert_eq!(b.volume("persistence")["phase"], "ready", "{}", b.log);
    assert_eq!(b.volume("persistence")["created"], true);
    assert_ne!(
        b.monotonic(
            "systemd-ask-password-console.service",
            "ActiveEnterTimestampMonotonic"
        ),
        0,
        "systemd's console agent asked"
    );
    assert!(b.web_ui_after_mount(), "{}", b.log);
    assert!(
        vm.opens("persistence", 0, PASS.as_bytes()),
        "cryptsetup: the passphrase"
    );
    // The owner takes the recovery key the boot holds for one fetch.
    let key = section(&b.log, "recovery");
    let key = key
        .trim()
        .strip_prefix("persistence slot 9: ")
        .expect("the recovery key");
    assert!(
        vm.opens("persistence", 9, key.as_bytes()),
        "cryptsetup: the recovery key"
    );
    assert_eq!(
        b.volume("STATE")["mount_point"],
        "/var/lib/volctl/state",
        "STATE moved into place under systemd's shared mounts"
    );
}

/// Boot 2, a daily one: asked once by systemd's agent, one KDF run; then the
/// package is upgraded while volctl serve runs, which restarts it.
fn daily_boot_then_an_upgrade(vm: &mut Vm, images: &Path) {
    vm.node_api_pki();
    std::fs::copy(package(), vm.dir.join("job/volctl.deb")).unwrap();
    vm.write("extra.sh", UPGRADE_WHILE_SERVING);
    let b = boot_debian(vm, images, Initrd::Systemd, &[("for persistence", PASS)]);
    for f in ["extra.sh", "volctl.deb"] {
        std::fs::remove_file(vm.dir.join("job").join(f)).unwrap();
    }
    let pid = |s: &str| {
        let s = section(&b.log, s);
        assert!(s.contains("ActiveState=active"), "{s}\n{}", b.log);
        s.lines()
            .find_map(|l| l.strip_prefix("MainPID="))
            .unwrap()
            .to_string()
    };
    let (before, after) = (pid("serve-before"), pid("serve-after"));
    assert!(section(&b.log, "upgrade").contains("dpkg 0"), "{}", b.log);
    assert_ne!(before, after, "volctl serve restarted on the new binary");
    assert_eq!(b.volume("persistence")["phase"], "ready", "{}", b.log);
    assert_eq!(
        b.volume("persistence")["unlocked_by"],
        serde_json::json!([0, "prompt"])
    );
    assert_eq!(b.volume("persistence")["kdf_runs"], 1);
    assert!(b.web_ui_after_mount(), "{}", b.log);
    assert_eq!(section(&b.log, "files").trim(), "kept-across-boots");
}

/// Boot 3, three wrong passphrases: the node goes on to multi-user.target
/// without persistence; the web UI never starts; nothing was written.
fn three_wrong_passphrases(vm: &mut Vm, images: &Path) {
    let before = partition_sum(vm, "persistence");
    let wrong = [
        ("for persistence", "wrong-1"),
        ("for persistence", "wrong-2"),
        ("for persistence", "wrong-3"),
    ];
    vm.write(
        "extra.sh",
        include_str!("../../../tests/vm/debian/query.sh"),
    );
    let b = boot_debian(vm, images, Initrd::Systemd, &wrong);
    assert_eq!(
        b.volume("persistence")["phase"],
        "waiting-for-key",
        "{}",
        b.log
    );
    assert_eq!(b.volume("STATE")["phase"], "ready");
    assert_eq!(b.unit("volctl-boot.service", "ActiveState"), "active");
    assert_eq!(
        b.unit("volctl-volume@persistence.service", "Result"),
        "exit-code"
    );
    assert_eq!(b.unit("webui.service", "ActiveState"), "inactive");
    assert_eq!(
        b.monotonic("webui.service", "ExecMainStartTimestampMonotonic"),
        0
    );
    assert_eq!(partition_sum(vm, "persistence"), before, "byte-identical");
    // An admin's `systemd-tty-ask-password-agent --query` answers a
    // question a volctl command posted (both of a new passphrase).
    let query = section(&b.log, "query");
    assert!(
        query.contains("asked: repeat") && query.contains("converge 0"),
        "{query}"
    );
    assert!(
        query.contains("asked on the ask-password agents"),
        "{query}"
    );
}

/// Boot 4, the initramfs path: volctl's hook on; the passphrase is asked on
/// the console before switch_root (before systemd's welcome), and
/// volctl-boot.service finds the volumes open: no KDF run, no question.
fn the_initramfs_path(vm: &mut Vm, images: &Path) {
    vm.write("extra.sh", include_str!("../../../tests/vm/debian/kms.sh"));
    let b = boot_debian(vm, images, Initrd::Volctl, &[("for persistence", PASS)]);
    let asked = b.log.find("for persistence").unwrap();
    let welcome = b.log.find("Welcome to").expect("systemd's welcome");
    assert!(asked < welcome, "asked in the initramfs:\n{}", b.log);
    assert!(
        !b.log.contains(PASS),
        "volctl's console prompt does not echo"
    );
    for name in ["STATE", "persistence"] {
        assert_eq!(b.volume(name)["phase"], "ready", "{}", b.log);
        assert_eq!(b.volume(name)["opened_before"], true, "{name}");
        assert_eq!(b.volume(name)["kdf_runs"], 0, "{name}");
    }
    assert!(b.web_ui_after_mount(), "{}", b.log);
    assert_eq!(section(&b.log, "files").trim(), "kept-across-boots");

    // The package's volctl-kms.service, as docs/kms-server.md deploys it:
    // it serves a seal and an unseal, one log line each, no colour codes.
    let kms = section(&b.log, "kms");
    assert!(kms.contains("converge 0"), "{kms}");
    assert!(kms.contains("\"unlocked_by\":[0,\"kms\"]"), "{kms}");
    assert!(kms.contains("ActiveState=active"), "{kms}");
    assert!(
        kms.contains("sealed op=\"seal\"") && kms.contains("unsealed op=\"unseal\""),
        "{kms}"
    );
    assert!(
        !kms.contains('\u{1b}'),
        "no colour codes in the journal: {kms}"
    );
}
