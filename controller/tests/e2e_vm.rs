//! The VM suite: the real boot path (dm-crypt, mkfs, mount) in a qemu VM
//! with Debian's kernel, since the host kernel has no device-mapper.
//! Every test here is `#[ignore]`: run them with `make e2e`.
//!
//! Each boot is one qemu run on the same disk image (a reboot is the next
//! run). The guest runs a job script; the host reads the serial console
//! (markers around `volctl status -o json`) and checks the disk itself.

mod common;

use controller::loopdev::LoopDevice;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

const UUID: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let st = Command::new(root().join("tests/vm/setup.sh"))
            .arg(env!("CARGO_BIN_EXE_volctl"))
            .status()
            .unwrap();
        assert!(st.success(), "VM setup failed");
    });
}

struct Vm {
    name: &'static str,
    dir: PathBuf,
    disk: PathBuf,
    boots: u32,
    started: Instant,
}

/// What one boot printed.
struct Boot {
    boot_rc: i32,
    status: serde_json::Value,
    log: String,
}

impl Boot {
    fn volume(&self, name: &str) -> &serde_json::Value {
        self.status["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name} in {}", self.status))
    }
    fn phase(&self, name: &str) -> String {
        self.volume(name)["phase"].as_str().unwrap().to_string()
    }
    /// Text between `BEGIN name` and `END name` markers.
    fn section(&self, name: &str) -> String {
        let b = format!("BEGIN {name}\n");
        let e = format!("END {name}");
        let i = self
            .log
            .find(&b)
            .unwrap_or_else(|| panic!("no section {name} in log:\n{}", self.log))
            + b.len();
        let j = self.log[i..].find(&e).unwrap() + i;
        self.log[i..j].to_string()
    }
}

impl Vm {
    /// A fresh disk image with GPT partitions `parts` (label, MiB; 0 = rest).
    fn new(name: &'static str, parts: &[(&str, u64)]) -> Self {
        setup();
        let dir = root().join("target/vm/work").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let disk = dir.join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(256 << 20)
            .unwrap();
        let mut args = Vec::new();
        for (i, (label, mib)) in parts.iter().enumerate() {
            let n = i + 1;
            let size = if *mib == 0 {
                "0".to_string()
            } else {
                format!("+{mib}M")
            };
            args.push(format!("-n{n}:0:{size}"));
            args.push(format!("-c{n}:{label}"));
        }
        let st = Command::new("sgdisk")
            .args(&args)
            .arg(&disk)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(st.success());
        std::fs::create_dir_all(dir.join("job")).unwrap();
        Vm {
            name,
            dir,
            disk,
            boots: 0,
            started: Instant::now(),
        }
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join("job").join(name), text).unwrap();
    }

    /// Boots once: `volctl boot` with `boot_args`, then `after` (shell).
    fn boot(&mut self, boot_args: &str, after: &str) -> Boot {
        self.boots += 1;
        let job = self.dir.join("job");
        std::fs::create_dir_all(&job).unwrap();
        let script = format!(
            "volctl boot --disk /dev/vda {boot_args} > /tmp/boot.out 2>&1\nrc=$?\ncat /tmp/boot.out\necho \"BOOT-RC $rc\"\necho 'BEGIN status'\nvolctl status -o json\necho 'END status'\n{after}\nvolctl close\n"
        );
        self.write("job.sh", &script);
        let out = Command::new(root().join("tests/vm/run.sh"))
            .arg(&self.disk)
            .arg(&job)
            .arg("240")
            .env("VOLCTL_VM_QEMU_EXTRA", format!("-uuid {UUID}"))
            .output()
            .unwrap();
        let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        let logs = root().join("target/vm/logs");
        std::fs::create_dir_all(&logs).unwrap();
        std::fs::write(
            logs.join(format!("{}-boot{}.log", self.name, self.boots)),
            &log,
        )
        .unwrap();
        assert!(
            out.status.success(),
            "VM run failed ({:?}): {}\n{log}",
            out.status.code(),
            String::from_utf8_lossy(&out.stderr)
        );
        let boot_rc = log
            .lines()
            .find_map(|l| l.strip_prefix("BOOT-RC "))
            .and_then(|r| r.trim().parse().ok())
            .expect("BOOT-RC marker");
        let mut b = Boot {
            boot_rc,
            status: serde_json::Value::Null,
            log,
        };
        b.status = serde_json::from_str(&b.section("status"))
            .unwrap_or_else(|e| panic!("status JSON: {e}\n{}", b.log));
        b
    }

    /// Attaches a partition of the image on the host.
    fn partition(&self, label: &str) -> LoopDevice {
        let p = controller::disks::by_label(std::slice::from_ref(&self.disk)).unwrap();
        let p = &p[label];
        LoopDevice::attach(&self.disk, p.offset, p.size).unwrap()
    }

    /// (header sequence id, keyslots per the cryptsetup CLI) of a partition.
    fn header(&self, label: &str) -> (u64, Vec<u32>) {
        let l = self.partition(label);
        let seq = match controller::header::read(l.path()).unwrap() {
            controller::header::Probe::Luks2(h) => h.seqid,
            controller::header::Probe::None => panic!("{label} has no LUKS2 header"),
        };
        (seq, common::slots(l.path()))
    }

    fn summary(&self, what: &str) {
        println!(
            "SCENARIO {:<28} ok  {} boot(s), {:.0} s  — {what}",
            self.name,
            self.boots,
            self.started.elapsed().as_secs_f64()
        );
    }
}

const CONFIG: &str = "apiVersion: v1alpha1
kind: VolumeConfig
name: STATE
encryption:
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
encryption:
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      static: {passphrase: ephemeral-pass}
      lockToSTATE: true
---
apiVersion: v1alpha1
kind: VolumeConfig
name: persistence
encryption:
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      static: {passphrase: persistence-pass}
";

const LAYOUT: &[(&str, u64)] = &[
    ("META", 1),
    ("STATE", 64),
    ("EPHEMERAL", 64),
    ("persistence", 0),
];

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn first_boot_second_boot_and_wiped_state() {
    let mut vm = Vm::new("boot-reboot-wipe-state", LAYOUT);
    vm.write("config.yaml", CONFIG);

    // Boot 1: blank disk → everything formatted, opened, mounted.
    let write_files = "echo state-file > /var/lib/volctl/state/f && echo ephemeral-file > /var/f && echo persistence-file > /persistence/f && echo files-written";
    let b = vm.boot("-f /job/config.yaml", write_files);
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    for v in ["STATE", "EPHEMERAL", "persistence"] {
        assert_eq!(b.phase(v), "ready", "{v}: {}", b.volume(v));
        assert_eq!(b.volume(v)["created"], true);
        assert!(b.volume(v)["mapped_device"]
            .as_str()
            .unwrap()
            .starts_with("/dev/mapper/luks2-"));
    }
    assert_eq!(b.volume("STATE")["mount_point"], "/var/lib/volctl/state");
    assert!(b.log.contains("files-written"), "{}", b.log);
    let headers: Vec<(u64, Vec<u32>)> = ["STATE", "EPHEMERAL", "persistence"]
        .iter()
        .map(|l| vm.header(l))
        .collect();
    for (_, slots) in &headers {
        assert_eq!(slots, &vec![0]);
    }
    // META holds STATE's encryption config, not the other volumes'.
    let meta = vm.partition("META");
    let m = controller::meta::read(meta.path()).unwrap();
    let state_enc: serde_json::Value =
        serde_json::from_slice(&m.records[&controller::meta::TAG_STATE_ENCRYPTION]).unwrap();
    assert!(state_enc["keys"][0].get("nodeID").is_some(), "{state_enc}");
    drop(meta);

    // Boot 2, no -f: STATE's config from META, the rest from STATE; files
    // read back; one KDF run per volume; no header written.
    let read_files =
        "echo 'BEGIN files'; cat /var/lib/volctl/state/f /var/f /persistence/f; echo 'END files'";
    let b = vm.boot("", read_files);
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    for v in ["STATE", "EPHEMERAL", "persistence"] {
        assert_eq!(b.phase(v), "ready", "{v}: {}", b.volume(v));
        assert_eq!(
            b.volume(v)["kdf_runs"],
            1,
            "{v} must unlock with exactly one KDF run"
        );
        assert_eq!(b.volume(v)["changes"].as_array().unwrap().len(), 0);
        assert_eq!(b.volume(v)["unlocked_by"][0], 0);
    }
    assert_eq!(
        b.status["config_source"],
        "STATE (encryption config from META)"
    );
    assert_eq!(
        b.section("files"),
        "state-file\nephemeral-file\npersistence-file\n"
    );
    let after: Vec<(u64, Vec<u32>)> = ["STATE", "EPHEMERAL", "persistence"]
        .iter()
        .map(|l| vm.header(l))
        .collect();
    assert_eq!(after, headers, "no keyslot changed, no header written");

    // Wipe STATE on the host: its salt is gone, so EPHEMERAL (lockToSTATE)
    // no longer opens; persistence (static) still does.
    {
        let l = vm.partition("STATE");
        let st = Command::new("dd")
            .args([
                "if=/dev/zero",
                "bs=1M",
                "count=20",
                "conv=notrunc,fsync",
                "status=none",
            ])
            .arg(format!("of={}", l.path().display()))
            .status()
            .unwrap();
        assert!(st.success());
    }
    let b = vm.boot(
        "-f /job/config.yaml",
        "echo 'BEGIN files'; cat /persistence/f; echo 'END files'",
    );
    assert_eq!(b.boot_rc, 3, "not everything is ready: {}", b.log);
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.volume("STATE")["created"], true);
    assert_eq!(b.phase("EPHEMERAL"), "failed");
    let err = b.volume("EPHEMERAL")["error"].as_str().unwrap();
    assert!(err.contains("no configured key opens"), "{err}");
    assert_eq!(b.phase("persistence"), "ready");
    assert_eq!(b.section("files"), "persistence-file\n");
    vm.summary("first boot, reboot (1 KDF each, no writes), STATE wiped");
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn volumes_that_cannot_come_up_are_reported_and_left_alone() {
    // No persistence partition; EPHEMERAL holds a plain ext4 with data.
    let mut vm = Vm::new(
        "waiting-for-wipe-and-missing",
        &[("META", 1), ("STATE", 64), ("EPHEMERAL", 0)],
    );
    vm.write("config.yaml", CONFIG);
    let digest = {
        let l = vm.partition("EPHEMERAL");
        assert!(Command::new("mkfs.ext4")
            .args(["-q", "-F"])
            .arg(l.path())
            .status()
            .unwrap()
            .success());
        common::sha256_file(l.path())
    };
    let b = vm.boot("-f /job/config.yaml", "");
    assert_eq!(b.boot_rc, 3, "{}", b.log);
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.phase("EPHEMERAL"), "waiting-for-wipe");
    assert!(b.volume("EPHEMERAL")["error"]
        .as_str()
        .unwrap()
        .contains("volctl reset --system-labels-to-wipe EPHEMERAL"));
    assert_eq!(b.phase("persistence"), "missing");
    let l = vm.partition("EPHEMERAL");
    assert_eq!(
        common::sha256_file(l.path()),
        digest,
        "EPHEMERAL's data is untouched"
    );
    vm.summary("waiting-for-wipe kept intact, missing reported");
}
