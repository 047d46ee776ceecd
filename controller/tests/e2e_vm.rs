//! The VM suite: the real boot path (dm-crypt, mkfs, mount) in a qemu VM
//! with Debian's kernel, since the host kernel has no device-mapper.
//! Every test here is `#[ignore]`: run them with `make e2e`.
//!
//! Each boot is one qemu run on the same disk image (a reboot is the next
//! run). The guest runs a job script; the host reads the serial console
//! (markers around `volctl status -o json`) and checks the disk itself.

mod common;

use controller::node::loopdev::LoopDevice;
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
    /// More qemu arguments (e.g. UEFI firmware and a TPM).
    qemu_extra: String,
    /// Seconds a run may take.
    timeout: u32,
    /// Another kernel image (the bzImage, for UEFI firmware).
    kernel: Option<PathBuf>,
}

/// What one boot printed.
struct Boot {
    boot_rc: i32,
    status: serde_json::Value,
    log: String,
}

impl Boot {
    fn all_ready(&self) -> bool {
        self.status["volumes"].as_array().is_some_and(|v| {
            v.iter()
                .all(|v| v["phase"] == "ready" || v["phase"] == "not-managed")
        })
    }
    fn keyslots(&self, name: &str) -> Vec<u64> {
        self.volume(name)["keyslots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    }
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
        section(&self.log, name)
    }
}

/// Text between `BEGIN name` and `END name` markers in a console log.
fn section(log: &str, name: &str) -> String {
    let b = format!("BEGIN {name}\n");
    let e = format!("END {name}");
    let i = log
        .find(&b)
        .unwrap_or_else(|| panic!("no section {name} in log:\n{log}"))
        + b.len();
    let j = log[i..].find(&e).unwrap() + i;
    log[i..j].to_string()
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
            qemu_extra: String::new(),
            timeout: 240,
            kernel: None,
        }
    }

    fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join("job").join(name), text).unwrap();
    }

    /// Boots once: `volctl boot` with `boot_args`, then `after` (shell).
    fn boot(&mut self, boot_args: &str, after: &str) -> Boot {
        self.boot_with("", boot_args, after)
    }

    /// Boots once, running `before` (shell) before `volctl boot`.
    fn boot_with(&mut self, before: &str, boot_args: &str, after: &str) -> Boot {
        self.boot_typing(before, boot_args, after, &[])
    }

    /// Boots once; whenever the console shows the next `(prompt, answer)`'s
    /// prompt, the answer is typed on it (the serial console is a socket
    /// then, read and written here).
    fn boot_typing(
        &mut self,
        before: &str,
        boot_args: &str,
        after: &str,
        typing: &[(&str, &str)],
    ) -> Boot {
        std::fs::create_dir_all(self.dir.join("job")).unwrap();
        let script = format!(
            "{before}\nvolctl boot --disk /dev/vda {boot_args} > /tmp/boot.out 2>&1\nrc=$?\ncat /tmp/boot.out\necho \"BOOT-RC $rc\"\necho 'BEGIN status'\nvolctl status -o json 2>/dev/null\necho 'END status'\n{after}\nvolctl close >/dev/null 2>&1\nexit 0\n"
        );
        self.write("job.sh", &script);
        let mut cmd = self.run_command();
        let (ok, log, stderr) = if typing.is_empty() {
            let out = cmd.output().unwrap();
            let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
            (out.status.success(), log, text(&out.stderr))
        } else {
            type_on_console(cmd, &self.dir.join("console.sock"), typing)
        };
        self.finished(ok, log, &stderr)
    }

    /// Boots once running `script` alone (no `volctl boot`); returns the
    /// console log.
    fn run_job(&mut self, script: &str) -> String {
        self.write("job.sh", script);
        let out = self.run_command().output().unwrap();
        let log = String::from_utf8_lossy(&out.stdout).replace('\r', "");
        self.keep_log(&log);
        assert!(
            out.status.success(),
            "VM run failed: {}\n{log}",
            text(&out.stderr)
        );
        log
    }

    /// One more run of `tests/vm/run.sh` on this disk and job, with the
    /// VM's extra qemu arguments and kernel.
    fn run_command(&mut self) -> Command {
        self.boots += 1;
        let mut cmd = Command::new(root().join("tests/vm/run.sh"));
        cmd.arg(&self.disk)
            .arg(self.dir.join("job"))
            .arg(self.timeout.to_string())
            .env(
                "VOLCTL_VM_QEMU_EXTRA",
                format!("-uuid {UUID} {}", self.qemu_extra),
            )
            .envs(
                self.kernel
                    .as_ref()
                    .map(|k| ("VOLCTL_VM_KERNEL", k.clone())),
            );
        cmd
    }

    /// Keeps the run's console log, asserts the run ended as it should, and
    /// reads the boot's exit status and status document from the log.
    fn finished(&self, ok: bool, log: String, stderr: &str) -> Boot {
        self.keep_log(&log);
        assert!(ok, "VM run failed: {stderr}\n{log}");
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
        // A boot killed on purpose (power cut) writes no status.
        b.status = serde_json::from_str(&b.section("status")).unwrap_or(serde_json::Value::Null);
        b
    }

    /// Keeps a run's console log in `target/vm/logs`.
    fn keep_log(&self, log: &str) {
        let logs = root().join("target/vm/logs");
        std::fs::create_dir_all(&logs).unwrap();
        let name = format!("{}-boot{}.log", self.name, self.boots);
        std::fs::write(logs.join(name), log).unwrap();
    }

    /// Gives the next boots a network card on qemu's user network
    /// (`restrict=on`) whose only way in is a free port on the host's
    /// 127.0.0.1, forwarded to the guest's node API (50000); returns it.
    fn forward_node_api(&mut self) -> u16 {
        let port = common::free_port();
        self.qemu_extra = format!("-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:50000 -device virtio-net-pci,netdev=n0,romfile=");
        port
    }

    /// Attaches a partition of the image on the host.
    fn partition(&self, label: &str) -> LoopDevice {
        let p = controller::node::disks::by_label(std::slice::from_ref(&self.disk)).unwrap();
        let p = &p[label];
        LoopDevice::attach(&self.disk, p.offset, p.size).unwrap()
    }

    /// (header sequence id, keyslots per the cryptsetup CLI) of a partition.
    fn header(&self, label: &str) -> (u64, Vec<u32>) {
        let l = self.partition(label);
        let seq = match controller::luks2::header::read(l.path()).unwrap() {
            controller::luks2::header::Probe::Luks2(h) => h.seqid,
            controller::luks2::header::Probe::None => panic!("{label} has no LUKS2 header"),
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

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the VM with its console on `sock`, typing each answer once its
/// prompt shows; returns (the guest's job exited 0, the console, stderr).
fn type_on_console(
    mut cmd: Command,
    sock: &Path,
    typing: &[(&str, &str)],
) -> (bool, String, String) {
    use std::io::{Read, Write};
    let _ = std::fs::remove_file(sock);
    let mut child = cmd
        .env("VOLCTL_VM_SERIAL_SOCKET", sock)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut con = (0..400)
        .find_map(|_| {
            std::os::unix::net::UnixStream::connect(sock)
                .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(25)))
                .ok()
        })
        .expect("the VM console socket");
    let (mut log, mut buf, mut next, mut seen) = (String::new(), [0u8; 4096], 0, 0);
    loop {
        let n = con.read(&mut buf).unwrap_or(0);
        if n == 0 {
            break;
        }
        log.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
        if let Some((prompt, answer)) = typing.get(next) {
            if let Some(at) = log[seen..].find(prompt) {
                seen += at + prompt.len();
                con.write_all(format!("{answer}\r").as_bytes()).unwrap();
                next += 1;
            }
        }
    }
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut stderr)
        .unwrap();
    let exited = child.wait().unwrap();
    let rc = log
        .lines()
        .find_map(|l| l.strip_prefix("VOLCTL-VM-EXIT "))
        .and_then(|r| r.trim().parse::<i32>().ok());
    assert_eq!(next, typing.len(), "not every prompt showed:\n{log}");
    (exited.success() && rc == Some(0), log, stderr)
}

const CONFIG: &str = "apiVersion: v1alpha1
kind: VolumeConfig
name: STATE
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      static: {passphrase: ephemeral-pass}
      lockToSTATE: true
---
apiVersion: v1alpha1
kind: VolumeConfig
name: persistence
mount:
  disableAccessTime: true
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      static: {passphrase: persistence-pass}
";

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn provisioning_lays_out_a_system_disk_and_a_blank_data_disk() {
    // The system disk holds META and a partition made elsewhere (MY-DATA,
    // ext4 with a file); a second, blank disk is attached.
    let mut vm = Vm::new("provision", &[("META", 1), ("MY-DATA", 16)]);
    let src = vm.dir.join("my-data");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "made elsewhere\n").unwrap();
    {
        let l = vm.partition("MY-DATA");
        let st = Command::new("mkfs.ext4")
            .args(["-q", "-d"])
            .arg(&src)
            .arg(l.path())
            .status()
            .unwrap();
        assert!(st.success());
    }
    let data_disk = vm.dir.join("data.img");
    std::fs::File::create(&data_disk)
        .unwrap()
        .set_len(512 << 20)
        .unwrap();
    vm.qemu_extra = format!(
        "-drive file={},format=raw,if=virtio,cache=unsafe",
        data_disk.display()
    );
    let config = "apiVersion: v1alpha1
kind: VolumeConfig
name: STATE
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
provisioning:
  maxSize: 64MiB
---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: data
provisioning:
  diskSelector:
    match: '!system_disk && disk.size >= 500u * MiB'
  minSize: 400MiB
  grow: true
filesystem:
  type: xfs
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
      lockToState: true
    - slot: 9
      recovery: {}
---
apiVersion: v1alpha1
kind: RawVolumeConfig
name: scratch
provisioning:
  diskSelector:
    match: system_disk
  maxSize: 32MiB
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: ExistingVolumeConfig
name: legacy
discovery:
  volumeSelector:
    match: volume.partition_label == \"MY-DATA\" && volume.name == \"ext4\"
mount:
  readOnly: true
";
    vm.write("config.yaml", config);
    let disks = "--disk /dev/vdc";
    let b = vm.boot(
        &format!("{disks} --recovery-key-out /tmp/recovery.txt -f /job/config.yaml"),
        "echo data-file > /var/mnt/data/f && echo written; echo 'BEGIN legacy'; cat /var/mnt/legacy/hello; touch /var/mnt/legacy/x 2>/dev/null || echo read-only; echo 'END legacy'; echo 'BEGIN rk'; ls -l /tmp/recovery.txt | cut -c1-10; cat /tmp/recovery.txt; echo 'END rk'",
    );
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    let made: Vec<String> = serde_json::from_value(b.status["partitions_created"].clone()).unwrap();
    // STATE, EPHEMERAL; a table and u-data on the data disk; r-scratch.
    assert_eq!(made.len(), 5, "{made:?}");
    assert!(made[0].contains("STATE on /dev/vda"), "{made:?}");
    assert!(made[3].contains("u-data on /dev/vdc"), "{made:?}");
    assert!(made[4].contains("r-scratch on /dev/vda"), "{made:?}");
    for v in ["STATE", "EPHEMERAL", "data", "scratch", "legacy"] {
        assert_eq!(b.phase(v), "ready", "{v}: {}", b.volume(v));
    }
    assert_eq!(
        b.volume("scratch")["mapped_device"],
        "/dev/mapper/luks2-r-scratch"
    );
    assert_eq!(
        b.volume("scratch")["mount_point"],
        serde_json::Value::Null,
        "a raw volume is not mounted"
    );
    assert_eq!(b.section("legacy"), "made elsewhere\nread-only\n");
    // The recovery key went to the 0600 file, and only there; the host's
    // cryptsetup opens u-data's slot 9 with it.
    let rk = b.section("rk");
    let mut lines = rk.lines();
    assert_eq!(lines.next(), Some("-rw-------"), "{rk}");
    let key = lines
        .next()
        .and_then(|l| l.strip_prefix("data slot 9: "))
        .expect(&rk)
        .to_string();
    assert_eq!(
        b.log.matches(&key).count(),
        1,
        "the key appears only where the test printed the file"
    );
    {
        let p = controller::node::disks::by_label(std::slice::from_ref(&data_disk)).unwrap();
        let l = LoopDevice::attach(&data_disk, p["u-data"].offset, p["u-data"].size).unwrap();
        assert!(common::opens(l.path(), 9, key.as_bytes()));
    }
    assert_eq!(b.volume("data")["mount_point"], "/var/mnt/data");
    assert!(b.log.contains("written"), "{}", b.log);

    // Reboot: nothing to lay out, the file is there.
    let b = vm.boot(disks, "echo 'BEGIN f'; cat /var/mnt/data/f; echo 'END f'");
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    assert_eq!(
        b.status["partitions_created"].as_array().map(Vec::len),
        Some(0)
    );
    assert_eq!(b.section("f"), "data-file\n");
    let table = String::from_utf8_lossy(
        &Command::new("sgdisk")
            .arg("-p")
            .arg(&data_disk)
            .output()
            .unwrap()
            .stdout,
    )
    .to_string();
    assert!(table.contains("u-data"), "{table}");

    // The data disk grows: the next boot grows the partition, then the
    // filesystem on the opened volume, online; the file is still there.
    std::fs::OpenOptions::new()
        .write(true)
        .open(&data_disk)
        .unwrap()
        .set_len(768 << 20)
        .unwrap();
    let b = vm.boot(disks, "echo 'BEGIN f'; cat /var/mnt/data/f; echo 'END f'");
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    let made = b.status["partitions_created"].to_string();
    assert!(made.contains("grow partition u-data on /dev/vdc"), "{made}");
    let changes = b.volume("data")["changes"].to_string();
    assert!(changes.contains("grew the filesystem from"), "{changes}");
    assert_eq!(b.section("f"), "data-file\n");
    vm.summary("META + MY-DATA disk and a blank disk → STATE, EPHEMERAL, u-data (xfs, encrypted), r-scratch (raw, encrypted), MY-DATA mounted read-only as an existing volume, a recovery key handed over in a 0600 file; reboot; the disk grows and so do partition and filesystem");
}

/// Valid Talos documents volctl validates and leaves alone.
const NOT_MANAGED: &str = "---
apiVersion: v1alpha1
kind: SwapVolumeConfig
name: swap1
provisioning:
  diskSelector:
    match: disk.transport == \"virtio\"
  maxSize: 64MiB
---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: scratch
volumeType: directory
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
    // Two valid Talos documents volctl leaves alone ride along.
    vm.write("config.yaml", &format!("{CONFIG}{NOT_MANAGED}"));

    // Boot 1: blank disk → everything formatted, opened, mounted.
    let write_files = "echo state-file > /var/lib/volctl/state/f && echo ephemeral-file > /var/f && echo persistence-file > /persistence/f && echo files-written; echo 'BEGIN mounts'; grep -E ' (/var|/persistence) ' /proc/mounts; echo 'END mounts'";
    let b = vm.boot("-f /job/config.yaml", write_files);
    assert_eq!(b.boot_rc, 0, "{}", b.log);
    for v in ["swap1", "scratch"] {
        assert_eq!(b.phase(v), "not-managed", "{v}: {}", b.volume(v));
    }
    // mount.secure defaults to true (nosuid, nodev); disableAccessTime: true on persistence.
    let mounts = b.section("mounts");
    for line in mounts.lines() {
        assert!(
            line.contains("nosuid") && line.contains("nodev"),
            "{mounts}"
        );
    }
    assert!(
        mounts
            .lines()
            .any(|l| l.contains(" /persistence ") && l.contains("noatime")),
        "{mounts}"
    );
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
    let m = controller::node::meta::read(meta.path()).unwrap();
    let state_enc: serde_json::Value =
        serde_json::from_slice(&m.records[&controller::node::meta::TAG_STATE_ENCRYPTION]).unwrap();
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

    // Wipe STATE on the host as `volctl reset` does (its header area and
    // its last MiB: a device counts as blank only when both ends are zero):
    // its salt is gone, so EPHEMERAL (lockToSTATE) no longer opens;
    // persistence (static) still does.
    {
        let l = vm.partition("STATE");
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(l.path())
            .unwrap();
        let size = std::io::Seek::seek(&mut f, std::io::SeekFrom::End(0)).unwrap();
        let mib = vec![0u8; 1 << 20];
        for at in (0..20).map(|i| i << 20).chain([size - (1 << 20)]) {
            std::os::unix::fs::FileExt::write_all_at(&f, &mib, at).unwrap();
        }
        f.sync_all().unwrap();
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

/// EPHEMERAL with the given keys (YAML list items); STATE nodeID; persistence static.
fn config_with_ephemeral(keys: &[&str]) -> String {
    let mut s = String::from("apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n    - slot: 0\n      nodeID: {}\n---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n");
    for k in keys {
        s.push_str(&format!("    - {k}\n"));
    }
    s.push_str("---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n    - slot: 0\n      static: {passphrase: persistence-pass}\n");
    s
}

const OLD: &str = "{slot: 0, static: {passphrase: old-pass}}";
const NODE: &str = "{slot: 1, nodeID: {}}";
const NEW: &str = "{slot: 2, static: {passphrase: new-pass}}";

impl Vm {
    /// Whether `pass` opens `slot` of `label`, per `cryptsetup open --test-passphrase` on the host.
    fn opens(&self, label: &str, slot: u32, pass: &[u8]) -> bool {
        let l = self.partition(label);
        common::opens(l.path(), slot, pass)
    }
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn reboot_driven_key_rotation_with_staged_configs() {
    let mut vm = Vm::new("rotation", LAYOUT);
    vm.write("a.yaml", &config_with_ephemeral(&[OLD, NODE]));
    vm.write("b.yaml", &config_with_ephemeral(&[OLD, NODE, NEW]));
    vm.write("c.yaml", &config_with_ephemeral(&[NODE, NEW]));
    vm.write(
        "bad.yaml",
        &config_with_ephemeral(&["{slot: 40, static: {passphrase: x}}"]),
    );
    vm.write(
        "lockout.yaml",
        &config_with_ephemeral(&["{slot: 5, static: {passphrase: never-enrolled}}"]),
    );

    let b = vm.boot(
        "-f /job/a.yaml",
        "echo ephemeral-file > /var/f; volctl apply-config -f /job/b.yaml --mode staged",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert!(b.log.contains("takes effect at the next boot"), "{}", b.log);
    assert_eq!(b.keyslots("EPHEMERAL"), vec![0, 1]);

    let b = vm.boot("", "echo 'BEGIN files'; cat /var/f; echo 'END files'; volctl apply-config -f /job/c.yaml --mode staged");
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.status["config_source"],
        "STATE (staged config promoted at this boot)"
    );
    assert_eq!(b.keyslots("EPHEMERAL"), vec![0, 1, 2]);
    assert_eq!(b.volume("EPHEMERAL")["changes"][0], "+ add slot 2 (static)");
    assert_eq!(b.section("files"), "ephemeral-file\n");

    let bad = "volctl apply-config -f /job/bad.yaml --mode staged; echo \"BAD-RC $?\"; volctl apply-config -f /job/lockout.yaml --mode staged; echo \"LOCKOUT-RC $?\"; echo 'BEGIN state'; ls /var/lib/volctl/state; echo 'END state'";
    let b = vm.boot(
        "",
        &format!("echo 'BEGIN files'; cat /var/f; echo 'END files'; {bad}"),
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.keyslots("EPHEMERAL"), vec![1, 2]);
    assert!(b.volume("EPHEMERAL")["changes"][0]
        .as_str()
        .unwrap()
        .starts_with("- remove slot 0"));
    assert_eq!(b.section("files"), "ephemeral-file\n");
    assert!(
        b.log.contains("BAD-RC 1") && b.log.contains("slot 40 is outside 0–31"),
        "{}",
        b.log
    );
    assert!(
        b.log.contains("LOCKOUT-RC 1")
            && b.log
                .contains("none of the keys in this config opens the volume"),
        "{}",
        b.log
    );
    assert!(
        !b.section("state").contains("config.pending.yaml"),
        "a rejected config is not stored"
    );

    assert!(
        !vm.opens("EPHEMERAL", 0, b"old-pass"),
        "the old passphrase no longer opens slot 0"
    );
    assert!(!vm.opens("EPHEMERAL", 2, b"old-pass"));
    assert!(vm.opens("EPHEMERAL", 2, b"new-pass"));
    vm.summary("slots {0,1} → {0,1,2} → {1,2}; bad and lock-out configs refused");
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn wiped_state_enters_maintenance_mode_and_takes_a_config() {
    let mut vm = Vm::new("maintenance", LAYOUT);
    // STATE starts plain, and is encrypted by the config given in maintenance mode.
    let plain_state = CONFIG.replacen("name: STATE\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n    - slot: 0\n      nodeID: {}\n", "name: STATE\n", 1);
    assert_ne!(plain_state, CONFIG);
    vm.write("plain-state.yaml", &plain_state);
    vm.write("config.yaml", CONFIG);
    let b = vm.boot(
        "-f /job/plain-state.yaml",
        "echo p > /persistence/f; volctl reset --system-labels-to-wipe STATE",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("STATE")["encrypted"], false);
    assert!(
        b.log.contains("the next boot enters maintenance mode"),
        "{}",
        b.log
    );

    let deliver = "(sleep 2; volctl apply-config --insecure -f /job/bad-then-good.yaml 2>&1 | sed 's/^/BAD: /'; volctl apply-config --insecure -f /job/config.yaml) &";
    vm.write("bad-then-good.yaml", "kind: Nope\n");
    let b = vm.boot_with(
        deliver,
        "",
        "echo 'BEGIN files'; cat /persistence/f; echo 'END files'",
    );
    assert!(
        b.log.contains("maintenance mode: STATE is blank"),
        "{}",
        b.log
    );
    assert!(
        b.log.contains("BAD: error: the config is invalid"),
        "{}",
        b.log
    );
    assert_eq!(
        b.status["config_source"],
        "maintenance mode (apply-config --insecure)"
    );
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.volume("STATE")["encrypted"], true);
    assert_eq!(
        b.phase("EPHEMERAL"),
        "failed",
        "its lockToSTATE key died with the old STATE"
    );
    assert!(b.volume("EPHEMERAL")["error"]
        .as_str()
        .unwrap()
        .contains("no configured key opens"));
    assert_eq!(b.phase("persistence"), "ready");
    assert_eq!(b.section("files"), "p\n");
    vm.summary("reset STATE → maintenance → apply-config --insecure → STATE encrypted");
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn power_cut_at_every_step_of_a_rotation_leaves_old_or_new_keys_working() {
    let old = "{slot: 0, static: {passphrase: old-pass}}";
    let new = "{slot: 1, static: {passphrase: new-pass}}";
    let mut vm = Vm::new("power-cut", LAYOUT);
    vm.write("a.yaml", &config_with_ephemeral(&[old]));
    vm.write("b.yaml", &config_with_ephemeral(&[old, new]));
    vm.write("c.yaml", &config_with_ephemeral(&[new]));
    let b = vm.boot(
        "-f /job/a.yaml",
        "echo survives > /var/f; volctl apply-config -f /job/b.yaml --mode staged",
    );
    assert!(b.all_ready(), "{}", b.log);
    let mut cuts = 0;
    for (step, next) in [("b", Some("c")), ("c", None)] {
        let stage = next
            .map(|n| format!("volctl apply-config -f /job/{n}.yaml --mode staged"))
            .unwrap_or_default();
        let mut done = false;
        for n in 1..=8 {
            let b = vm.boot_with(&format!("export VOLCTL_POWER_CUT_AFTER_WRITES={n}"), "", &format!("unset VOLCTL_POWER_CUT_AFTER_WRITES; echo 'BEGIN files'; cat /var/f; echo 'END files'; {stage}"));
            if b.log.contains("simulated power cut") {
                cuts += 1;
                let ok =
                    vm.opens("EPHEMERAL", 0, b"old-pass") || vm.opens("EPHEMERAL", 1, b"new-pass");
                assert!(ok, "step {step}, cut after {n} write(s): neither the old nor the new key opens EPHEMERAL");
                continue;
            }
            assert!(b.all_ready(), "step {step}: {}", b.log);
            assert_eq!(b.section("files"), "survives\n");
            done = true;
            break;
        }
        assert!(done, "step {step} never completed");
    }
    assert!(cuts >= 3, "only {cuts} power cuts happened");
    assert!(!vm.opens("EPHEMERAL", 0, b"old-pass"));
    assert!(vm.opens("EPHEMERAL", 1, b"new-pass"));
    vm.summary(&format!(
        "{cuts} power cuts across add and remove; always openable"
    ));
}

/// swtpm serving one qemu run as its TPM (`-tpmdev emulator`); its state
/// directory persists across runs, like a real TPM's NV memory. SeaBIOS's
/// ACPI tables break with a TPM here, so these boots use UEFI firmware
/// (OVMF), which boots the bzImage rather than the ELF vmlinux: `code` and
/// the template of its variable store (`vars_template`, copied once per VM)
/// name the OVMF build; another build measures other values into PCR 0, as
/// a firmware update does.
fn with_tpm(vm: &mut Vm, code: &str, vars_template: &str) -> KillOnDrop {
    let state = vm.dir.join("tpmstate");
    std::fs::create_dir_all(&state).unwrap();
    let sock = vm.dir.join("swtpm.sock");
    let _ = std::fs::remove_file(&sock);
    let child = Command::new("swtpm")
        .args(["socket", "--tpm2", "--terminate"])
        .args(["--tpmstate", &format!("dir={}", state.display())])
        .args(["--ctrl", &format!("type=unixio,path={}", sock.display())])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = Instant::now();
    while !sock.exists() {
        assert!(started.elapsed().as_secs() < 10, "swtpm did not start");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let vars = vm.dir.join(vars_template);
    if !vars.exists() {
        std::fs::copy(Path::new("/usr/share/OVMF").join(vars_template), &vars).unwrap();
    }
    vm.qemu_extra = format!(
        "-drive if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/{code} -drive if=pflash,format=raw,file={} -chardev socket,id=chrtpm,path={} -tpmdev emulator,id=tpm0,chardev=chrtpm -device tpm-tis,tpmdev=tpm0",
        vars.display(),
        sock.display()
    );
    let boot_dir = root().join("target/vm/kernel/boot");
    vm.kernel = std::fs::read_dir(&boot_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("vmlinuz-")
        });
    assert!(vm.kernel.is_some(), "no vmlinuz in {}", boot_dir.display());
    KillOnDrop(child)
}

/// A helper process that dies with the test, also when the test panics.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn tpm_key_opens_ephemeral_and_reseals_itself_after_a_firmware_update() {
    let mut vm = Vm::new("tpm", LAYOUT);
    // Sealed to PCR 0 (the firmware's code); a recovery key for the day the
    // TPM refuses.
    vm.write(
        "config.yaml",
        &config_with_ephemeral(&[
            "{slot: 0, tpm: {options: {pcrs: [0]}}}",
            "{slot: 9, recovery: {}}",
        ]),
    );
    let boot =
        |vm: &mut Vm, firmware: (&str, &str), args: &str, after: &str, typing: &[(&str, &str)]| {
            let _tpm = with_tpm(vm, firmware.0, firmware.1);
            vm.boot_typing("", args, after, typing)
        };
    let old = ("OVMF_CODE.fd", "OVMF_VARS.fd");
    let new = ("OVMF_CODE_4M.fd", "OVMF_VARS_4M.fd");
    let files = "echo 'BEGIN files'; cat /var/f; echo 'END files'";
    let b = boot(
        &mut vm,
        old,
        "-f /job/config.yaml --tpm-tcti device:/dev/tpmrm0 --recovery-key-out /tmp/rk",
        "echo tpm-data > /var/f; echo 'BEGIN key'; cat /tmp/rk; echo 'END key'",
        &[],
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(vm.header("EPHEMERAL").1, vec![0, 9]);
    let key = b.section("key");
    assert!(key.trim().starts_with("EPHEMERAL slot 9: "), "{key}");
    let key = key.trim().rsplit(' ').next().unwrap().to_string();
    let b = boot(&mut vm, old, "", files, &[]);
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([0, "tpm"])
    );
    assert_eq!(b.volume("EPHEMERAL")["kdf_runs"], 1);

    // A firmware update (another OVMF build: PCR 0 changes): the TPM
    // refuses, the recovery key typed at the console opens, and in the
    // same run the TPM slot re-seals itself to the new PCR value.
    let b = boot(&mut vm, new, "", "", &[("for EPHEMERAL:", &key)]);
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([9, "recovery"]),
        "{}",
        b.status
    );
    assert_eq!(
        b.volume("EPHEMERAL")["resealed"],
        serde_json::json!([0]),
        "{}",
        b.status
    );
    // The next boot on the new firmware unlocks by TPM again: one KDF run.
    let b = boot(&mut vm, new, "", files, &[]);
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([0, "tpm"])
    );
    assert_eq!(b.volume("EPHEMERAL")["kdf_runs"], 1);
    assert_eq!(b.section("files"), "tpm-data\n");
    vm.summary("TPM (swtpm, UEFI) seals EPHEMERAL's key to PCR 0; after a firmware update the recovery key opens it and the slot re-seals itself; the next boot unseals again");
}

/// Where the guest dials the KMS: an address on qemu's user network that
/// exists only as a forwarding rule (see [`with_kms`]).
const GUEST_KMS: &str = "10.0.2.100:4050";

/// Gives the next boot a network card on qemu's user network with
/// `restrict=on` (the guest reaches nothing outside qemu) and one rule:
/// a guest connection to [`GUEST_KMS`] runs `proxy.sh`, which socat
/// connects to `volctl kms-server` on the host's 127.0.0.1:`port`. A `cmd:`
/// rule runs one proxy per connection; a `tcp:` one would be one stream
/// opened when qemu starts.
fn with_kms(vm: &mut Vm, port: u16) {
    let proxy = vm.dir.join("proxy.sh");
    std::fs::write(
        &proxy,
        // stderr stays out of the stream: qemu hands the socket to the
        // command, and a socat error there would reach the guest as bytes.
        format!("#!/bin/sh\nexec socat STDIO TCP:127.0.0.1:{port} 2>/dev/null\n"),
    )
    .unwrap();
    std::fs::set_permissions(&proxy, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    vm.qemu_extra = format!(
        "-netdev user,id=n0,restrict=on,guestfwd=tcp:{GUEST_KMS}-cmd:{} -device virtio-net-pci,netdev=n0,romfile=",
        proxy.display()
    );
}

/// The guest's side of [`with_kms`]: eth0 up with a static address.
const GUEST_NET: &str =
    "i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0";

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn kms_key_opens_ephemeral_over_the_guest_network() {
    let mut vm = Vm::new("kms", LAYOUT);
    let pki = kms::test_pki::generate_for(&[std::net::IpAddr::from([10, 0, 2, 100])]);
    let kms_dir = vm.dir.join("kms");
    std::fs::create_dir_all(&kms_dir).unwrap();
    vm.write("ca.pem", std::str::from_utf8(&pki.ca_pem).unwrap());
    vm.write(
        "config.yaml",
        &config_with_ephemeral(&[&format!(
            "{{slot: 0, kms: {{endpoint: 'https://{GUEST_KMS}'}}}}"
        )]),
    );
    let args = "--kms-ca-file /job/ca.pem";

    // First boot: EPHEMERAL formatted with a key sealed by the KMS.
    let server = common::KmsServer::start(&kms_dir, &pki);
    with_kms(&mut vm, server.port);
    let b = vm.boot_with(
        GUEST_NET,
        &format!("-f /job/config.yaml {args}"),
        "echo kms-data > /var/f",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("EPHEMERAL")["created"], true);
    assert_eq!(vm.header("EPHEMERAL").1, vec![0]);

    // Second boot (config from STATE): the KMS unseals the key.
    let b = vm.boot_with(
        GUEST_NET,
        args,
        "echo 'BEGIN files'; cat /var/f; echo 'END files'",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(
        b.volume("EPHEMERAL")["unlocked_by"],
        serde_json::json!([0, "kms"])
    );
    assert_eq!(b.volume("EPHEMERAL")["kdf_runs"], 1);
    assert_eq!(b.section("files"), "kms-data\n");

    // KMS down: EPHEMERAL fails with the reason, the rest comes up, the
    // header is not touched.
    assert!(server.stop().success());
    let before = vm.header("EPHEMERAL");
    let b = vm.boot_with(GUEST_NET, args, "");
    assert_eq!(b.boot_rc, 3, "{}", b.log);
    assert_eq!(b.phase("STATE"), "ready");
    assert_eq!(b.phase("persistence"), "ready");
    assert_eq!(b.phase("EPHEMERAL"), "failed");
    let err = b.volume("EPHEMERAL")["error"].as_str().unwrap().to_string();
    assert!(
        err.contains("0 (kms)") && err.contains("unreachable"),
        "{err}"
    );
    assert_eq!(vm.header("EPHEMERAL"), before);

    // KMS back (same master keys, new port): the data is there.
    let server = common::KmsServer::start(&kms_dir, &pki);
    with_kms(&mut vm, server.port);
    let b = vm.boot_with(
        GUEST_NET,
        args,
        "echo 'BEGIN files'; cat /var/f; echo 'END files'",
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.section("files"), "kms-data\n");
    vm.summary(
        "KMS on host loopback, reached over qemu's user network; outage reported, then back",
    );
}

/// The appliance (NeuralDrive's): STATE and EPHEMERAL open unattended,
/// `persistence` only by a passphrase typed at the console or its
/// recovery key.
const APPLIANCE: &str = "apiVersion: v1alpha1
kind: VolumeConfig
name: STATE
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      nodeID: {}
---
apiVersion: v1alpha1
kind: VolumeConfig
name: persistence
encryption:
  provider: luks2
  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}
  keys:
    - slot: 0
      prompt: {}
    - slot: 9
      recovery: {}
";

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

/// The node's side of an API-driven boot: boot, then put the node API's
/// certificate on STATE (as an image build would) if it is not there, and
/// serve until a reboot is asked for; then power off (the harness starts
/// the VM again: a real reboot).
const SERVING_JOB: &str = "volctl boot --disk /dev/vda > /tmp/boot.out 2>&1
rc=$?
cat /tmp/boot.out
echo \"BOOT-RC $rc\"
echo 'BEGIN status'; volctl status -o json 2>/dev/null; echo 'END status'
api=/var/lib/volctl/state/api
if [ -d /var/lib/volctl/state ]; then
  mkdir -p $api
  for f in ca.crt server.crt server.key; do [ -e $api/$f ] || cp /job/api/$f $api/$f; done
  chmod 600 $api/server.key
fi
volctl serve --disk /dev/vda --reboot-command 'touch /tmp/reboot' > /tmp/serve.out 2>&1 &
while [ ! -e /tmp/reboot ]; do sleep 0.1; done
sleep 0.3
kill %1
echo 'BEGIN serve'; cat /tmp/serve.out; echo 'END serve'
volctl close >/dev/null 2>&1
exit 0
";

/// The admin's workstation: `volctl -n 127.0.0.1:PORT …` (the port is
/// forwarded by qemu to the guest's 50000).
struct Admin {
    node: String,
    pki: PathBuf,
    rebooted: std::cell::Cell<bool>,
}

impl Admin {
    fn volctl(&self, args: &[&str]) -> std::process::Output {
        let mut a = vec!["-n", &self.node];
        a.extend_from_slice(args);
        let out = Command::new(env!("CARGO_BIN_EXE_volctl"))
            .args(&a)
            .env("VOLCTLCONFIG", self.pki.join("admin.volctlconfig"))
            .output()
            .unwrap();
        if args.contains(&"--reboot")
            || args.first() == Some(&"reboot")
            || args.windows(2).any(|w| w == ["--mode", "reboot"])
        {
            self.rebooted.set(out.status.success());
        }
        out
    }

    /// Runs `args`, asserting success; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let o = self.volctl(args);
        assert!(o.status.success(), "volctl {args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    }

    /// Waits until `args` succeeds (the guest is still booting).
    fn when_up(&self, args: &[&str]) -> std::process::Output {
        let deadline = Instant::now() + std::time::Duration::from_secs(150);
        loop {
            let o = self.volctl(args);
            if o.status.success() || Instant::now() > deadline {
                return o;
            }
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }
}

impl Vm {
    /// Makes the node API's PKI (`volctl gen`, as an admin would) and puts
    /// the node's part in the job.
    fn node_api_pki(&self) -> PathBuf {
        let pki = self.dir.join("pki");
        let o = Command::new(env!("CARGO_BIN_EXE_volctl"))
            .args(["gen", "--out"])
            .arg(&pki)
            .args(["--san", "127.0.0.1"])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o.stderr));
        let api = self.dir.join("job/api");
        std::fs::create_dir_all(&api).unwrap();
        for f in ["ca.crt", "server.crt", "server.key"] {
            std::fs::copy(pki.join(f), api.join(f)).unwrap();
        }
        pki
    }

    /// One boot driven from the host over the node API: `drive` runs while
    /// the guest boots and serves; a reboot it asks for ends the run (else
    /// the harness asks for one).
    fn serve_boot(&mut self, pki: &Path, drive: impl FnOnce(&Admin)) -> Boot {
        let port = self.forward_node_api();
        self.write("job.sh", &format!("{GUEST_NET}\n{SERVING_JOB}"));
        let child = self
            .run_command()
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let admin = Admin {
            node: format!("127.0.0.1:{port}"),
            pki: pki.to_path_buf(),
            rebooted: std::cell::Cell::new(false),
        };
        drive(&admin);
        if !admin.rebooted.get() {
            let o = admin.when_up(&["reboot"]);
            assert!(o.status.success(), "reboot: {}", text(&o.stderr));
        }
        let out = child.wait_with_output().unwrap();
        let log = text(&out.stdout).replace('\r', "");
        self.finished(out.status.success(), log, &text(&out.stderr))
    }
}

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

impl Vm {
    /// Boots once and cuts the power (qemu killed with SIGKILL) as soon as
    /// the console shows `marker`; returns the console.
    fn boot_cut_when(&mut self, boot_args: &str, after: &str, marker: &str) -> String {
        use std::io::Read;
        let script = format!(
            "volctl boot --disk /dev/vda {boot_args}\necho BOOT-RC $?\n{after}\nsleep 600\n"
        );
        self.write("job.sh", &script);
        let sock = self.dir.join("console.sock");
        let _ = std::fs::remove_file(&sock);
        let mut child = self
            .run_command()
            .env("VOLCTL_VM_SERIAL_SOCKET", &sock)
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        let mut con = (0..400)
            .find_map(|_| {
                std::os::unix::net::UnixStream::connect(&sock)
                    .map_err(|_| std::thread::sleep(std::time::Duration::from_millis(25)))
                    .ok()
            })
            .expect("the VM console socket");
        let (mut log, mut buf) = (String::new(), [0u8; 4096]);
        while !log.contains(marker) {
            let n = con.read(&mut buf).unwrap_or(0);
            if n == 0 {
                break;
            }
            log.push_str(&String::from_utf8_lossy(&buf[..n]).replace('\r', ""));
        }
        // qemu runs under `timeout`, in a process group of its own: it is
        // found by its disk.
        let pattern = format!("file={},", self.disk.display());
        let _ = Command::new("pkill")
            .args(["-KILL", "-f", &pattern])
            .status();
        let _ = child.wait();
        self.keep_log(&log);
        assert!(
            log.contains(marker),
            "the console never showed {marker:?}:\n{log}"
        );
        log
    }
}

/// STATE and EPHEMERAL as in [`CONFIG`]; `persistence` plain, or with
/// `inPlace` encryption.
fn config_with_persistence(in_place: bool) -> String {
    let head = CONFIG
        .split("---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence")
        .next()
        .unwrap();
    let persistence = if in_place {
        "---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  inPlace: true\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n    - slot: 0\n      static: {passphrase: persistence-pass}\n"
    } else {
        "---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\n"
    };
    format!("{head}{persistence}")
}

const SUMS: &str = "cd /persistence && echo 'BEGIN sums' && find . -type f ! -path './lost+found*' | sort | xargs sha256sum && echo 'END sums'; cd /";

/// Waits (up to 5 min) until the online reencryption of persistence says it
/// is done, then prints its progress record.
/// Waits for the online run the boot started (none when the boot finished
/// the reencryption itself: a cut in its last step) and prints its record.
const WAIT_ONLINE: &str = "i=0; while [ -f /run/volctl/reencrypt/persistence.json ] && ! grep -q '\"state\": \"done\"' /run/volctl/reencrypt/persistence.json && [ $i -lt 400 ]; do sleep 0.5; i=$((i+1)); done; echo 'BEGIN online'; cat /run/volctl/reencrypt/persistence.json 2>/dev/null; echo; echo 'END online'";

/// The start of persistence's data area, decrypted with the volume key
/// `vk` (hex): whether it reads as an ext4 filesystem.
/// The progress record (JSON) in a console section; the run's own progress
/// lines share the console.
fn progress_record(section: &str) -> serde_json::Value {
    let json = &section[section.find('{').unwrap()..=section.rfind('}').unwrap()];
    serde_json::from_str(json).unwrap()
}

const EMPTY_SHA256: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

fn data_reads_as_ext4(vm: &Vm, vk_hex: &str) -> bool {
    use std::io::{Read, Seek};
    let p = vm.partition("persistence");
    let offset = match controller::luks2::header::read(p.path()).unwrap() {
        controller::luks2::header::Probe::Luks2(h) => h.data_offset().unwrap(),
        controller::luks2::header::Probe::None => panic!("no LUKS2 header"),
    };
    let mut f = std::fs::File::open(p.path()).unwrap();
    f.seek(std::io::SeekFrom::Start(offset)).unwrap();
    let mut data = vec![0u8; 4096];
    f.read_exact(&mut data).unwrap();
    common::xts_decrypt(&mut data, &common::hex_bytes(vk_hex));
    common::is_ext4(&data)
}

#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn persistence_holding_data_is_encrypted_in_place_online_and_a_cut_run_resumes() {
    let mut vm = Vm::new("in-place", LAYOUT);
    vm.write("plain.yaml", &config_with_persistence(false));
    vm.write("inplace.yaml", &config_with_persistence(true));
    // The same with a second key, staged while the encryption runs.
    let two_keys = format!(
        "{}    - slot: 1\n      static: {{passphrase: second-pass}}\n",
        config_with_persistence(true)
    );
    vm.write("twokeys.yaml", &two_keys);
    // Plain persistence, filled with data; the inPlace config staged.
    let b = vm.boot(
        "-f /job/plain.yaml",
        &format!("dd if=/dev/urandom of=/persistence/big bs=1M count=24 2>/dev/null; mkdir -p /persistence/a/b/c/d/e; echo deep > /persistence/a/b/c/d/e/f; dd if=/dev/urandom of=/persistence/a/mid bs=1M count=3 2>/dev/null; {SUMS}; volctl apply-config -f /job/inplace.yaml --mode staged"),
    );
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("persistence")["encrypted"], false);
    let sums = b.section("sums");
    assert!(
        sums.contains("./big") && sums.contains("./a/b/c/d/e/f"),
        "{sums}"
    );
    // (No empty file: busybox's `head -c` takes no size suffix.)
    assert!(!sums.contains(EMPTY_SHA256), "{sums}");

    // The boot mounts it and encrypts it online: once the run has done
    // something, a file is written and synced, the run still going; then
    // the power is cut. The run is given the lowest CPU priority once it
    // has started (every thread of its process group), so that what this
    // script does before the cut does not race it to its end on the VM's
    // one emulated CPU.
    let during = "i=0; while ! grep -q '\"done_bytes\": [1-9]' /run/volctl/reencrypt/persistence.json && [ $i -lt 400 ]; do sleep 0.05; i=$((i+1)); done; run=$(sed -n 's/.*\"pid\": *\\([0-9]*\\).*/\\1/p' /run/volctl/reencrypt/persistence.json); renice -n 19 -g $run > /dev/null && echo RENICED; volctl status; dd if=/dev/urandom of=/persistence/during bs=1M count=5 2>/dev/null; sync; echo 'BEGIN progress'; cat /run/volctl/reencrypt/persistence.json; echo; echo 'END progress'; volctl apply-config -f /job/twokeys.yaml --mode staged > /tmp/staged.out 2>&1; echo \"STAGED-RC $?\"; tail -5 /tmp/staged.out; echo CUT-HERE";
    let log = vm.boot_cut_when("", during, "CUT-HERE\n");
    assert!(log.contains("BOOT-RC 0"), "{log}");
    assert!(log.contains("RENICED"), "{log}");
    assert!(log.contains("STAGED-RC 0"), "{log}");
    assert!(
        log.contains("persistence: encrypting in place 0% (0/"),
        "{log}"
    );
    let progress = progress_record(&section(&log, "progress"));
    assert_eq!(progress["state"], "running", "{progress}");
    assert!(
        progress["done_bytes"].as_u64() < progress["total_bytes"].as_u64(),
        "{progress}"
    );
    let p = vm.partition("persistence");
    let dump = Command::new("cryptsetup")
        .args(["luksDump"])
        .arg(p.path())
        .output()
        .unwrap();
    assert!(
        text(&dump.stdout).contains("online-reencrypt"),
        "{}",
        text(&dump.stdout)
    );
    drop(p);

    // The next boot resumes it online and finishes it: the data as it was,
    // the file written mid-run too.
    // The key the staged config adds waits for the run (libcryptsetup
    // changes no keyslot mid-reencryption).
    let b = vm.boot("", &format!("{WAIT_ONLINE}; {SUMS}"));
    assert!(b.all_ready(), "{}", b.log);
    assert_eq!(b.volume("persistence")["encrypted"], true);
    // Where the cut landed decides how it resumes: mid-run, online (and the
    // staged key waits for it); in the run's last step, this boot finishes
    // the step itself from the moved copy, and the key goes in at once.
    let finished_by_boot = b.section("online").trim().is_empty();
    let changes = b.volume("persistence")["changes"].clone();
    let notes = b.volume("persistence")["notes"].to_string();
    if finished_by_boot {
        assert!(
            changes[0]
                .as_str()
                .is_some_and(|c| c.starts_with("~ finish the in-place encryption")),
            "{}",
            b.status
        );
        assert_eq!(changes[1], "+ add slot 1 (static)", "{}", b.status);
        assert!(!notes.contains("waits until"), "no stale note: {notes}");
        assert_eq!(b.keyslots("persistence"), vec![0, 1]);
    } else {
        let online = progress_record(&b.section("online"));
        assert_eq!(online["state"], "done", "{online}");
        assert!(
            notes.contains(
                "`+ add slot 1 (static)` waits until the reencryption running online has finished"
            ),
            "{}",
            b.status
        );
        assert_eq!(b.keyslots("persistence"), vec![0]);
    }
    let after = b.section("sums");
    assert!(after.contains("./during"), "{after}");
    let without_during: String = after
        .lines()
        .filter(|l| !l.ends_with("./during"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(
        without_during.trim_end(),
        sums.trim_end(),
        "the data is as it was"
    );
    assert!(vm.opens("persistence", 0, b"persistence-pass"));
    let p = vm.partition("persistence");
    let dump = Command::new("cryptsetup")
        .args(["luksDump"])
        .arg(p.path())
        .output()
        .unwrap();
    assert!(!text(&dump.stdout).contains("online-reencrypt"));
    let old_key = common::volume_key(p.path(), 0, b"persistence-pass");
    drop(p);
    assert!(data_reads_as_ext4(&vm, &old_key));

    // The next boot adds the second key; then the volume key is rotated
    // online, the volume mounted and written to meanwhile; `volctl close`
    // stops the rotation part way (after its step), and the next boot
    // resumes it online: the same data, the old volume key decrypts
    // garbage, both configured keyslots open it, no other is left.
    let rotate = "volctl rotate-volume-key --volume persistence -f /job/twokeys.yaml --online > /tmp/rotate.out 2>&1 & R=$!; i=0; while ! grep -q '\"done_bytes\": [1-9]' /run/volctl/reencrypt/persistence.json 2>/dev/null && [ $i -lt 600 ]; do sleep 0.1; i=$((i+1)); done; dd if=/dev/urandom of=/persistence/rotating bs=1M count=1 conv=fsync 2>/dev/null; echo 'BEGIN rotating'; cd /persistence; sha256sum ./rotating; cd /; echo 'END rotating'";
    let b = vm.boot(
        "",
        &format!("{rotate}; volctl close; echo \"CLOSE-RC $?\"; wait $R; echo \"ROTATE-RC $?\"; cat /tmp/rotate.out; volctl status"),
    );
    assert!(b.all_ready(), "{}", b.log);
    if !finished_by_boot {
        assert_eq!(
            b.volume("persistence")["changes"][0],
            "+ add slot 1 (static)"
        );
    }
    assert!(b.log.contains("CLOSE-RC 0"), "{}", b.log);
    assert!(
        b.log
            .contains("stopped the online reencryption of persistence at"),
        "{}",
        b.log
    );
    assert!(!b.log.contains("ROTATE-RC 0"), "{}", b.log);
    assert!(
        b.log.contains("re-encrypting to the new volume key")
            && b.log.contains("(stopped; the next boot resumes it)"),
        "{}",
        b.log
    );
    let rotated = format!("{after}{}", b.section("rotating"));
    let p = vm.partition("persistence");
    let dump = Command::new("cryptsetup")
        .args(["luksDump"])
        .arg(p.path())
        .output()
        .unwrap();
    assert!(
        text(&dump.stdout).contains("online-reencrypt"),
        "{}",
        text(&dump.stdout)
    );
    drop(p);
    let b = vm.boot("", &format!("{WAIT_ONLINE}; {SUMS}"));
    assert!(b.all_ready(), "{}", b.log);
    let online = progress_record(&b.section("online"));
    assert_eq!(online["state"], "done", "{online}");
    assert_eq!(online["operation"], "rotate-volume-key", "{online}");
    let mut want: Vec<&str> = rotated.lines().collect();
    want.sort_by_key(|l| l.split_whitespace().nth(1).map(str::to_string));
    assert_eq!(b.section("sums").lines().collect::<Vec<_>>(), want);
    let p = vm.partition("persistence");
    let new_key = common::volume_key(p.path(), 0, b"persistence-pass");
    assert_eq!(common::slots(p.path()), vec![0, 1]);
    assert!(common::opens(p.path(), 1, b"second-pass"));
    drop(p);
    assert_ne!(new_key, old_key);
    assert!(
        !data_reads_as_ext4(&vm, &old_key),
        "the old key still decrypts"
    );
    assert!(data_reads_as_ext4(&vm, &new_key));
    vm.summary("plain persistence with data → inPlace staged → encrypted online, written meanwhile, power cut mid-run → resumed online (a staged key waits for it), data identical → key added, volume key rotated online, written meanwhile, stopped by volctl close → resumed online by the next boot → old key decrypts garbage");
}

/// The online run cut at every write (tests/vm/online_every_write.sh): an
/// open, mounted volume's key rotated online, cut at each of its writes,
/// whole in one VM and torn in another (the two run at once); after each
/// cut the volume opens, and after the next converge `cryptsetup` decrypts
/// the same files.
#[test]
#[ignore = "VM suite: run with `make e2e`"]
fn an_online_rotation_survives_a_cut_at_every_write() {
    let sweeps = std::thread::scope(|s| {
        let whole = s.spawn(|| online_sweep("online-every-write-whole", "whole"));
        let torn = s.spawn(|| online_sweep("online-every-write-torn", "torn"));
        [whole.join().unwrap(), torn.join().unwrap()]
    });
    let writes = sweeps[0].0;
    assert_eq!(sweeps[1].0, writes, "both VMs count the same writes");
    let points: Vec<&String> = sweeps.iter().flat_map(|s| &s.1).collect();
    let failed: Vec<&&String> = points.iter().filter(|l| !l.ends_with(" ok")).collect();
    assert!(
        failed.is_empty(),
        "{} of {} cut points failed:\n{}",
        failed.len(),
        points.len(),
        failed
            .iter()
            .map(|l| l.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    );
    if std::env::var("VOLCTL_E2E_ONLY").is_err() {
        assert_eq!(points.len(), 2 * writes, "every write, both modes");
    }
    assert!(writes >= 8, "{writes}");
    sweeps[0].2.summary(&format!(
        "online rotation: {writes} writes, {} cut points (whole and torn, two VMs at once), all recovered",
        points.len()
    ));
}

/// One VM's sweep in `mode`: the writes counted, the POINT lines, the VM.
fn online_sweep(name: &'static str, mode: &str) -> (usize, Vec<String>, Vm) {
    let mut vm = Vm::new(name, &[("META", 1)]);
    vm.timeout = 1500;
    vm.write(
        "rotate.yaml",
        "apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}\n  keys:\n    - slot: 0\n      static: {passphrase: rotate-pass}\n",
    );
    vm.write(
        "sweep.sh",
        include_str!("../../tests/vm/online_every_write.sh"),
    );
    let only = std::env::var("VOLCTL_E2E_ONLY").unwrap_or_default();
    let log = vm.run_job(&format!(
        "sh /job/sweep.sh /job/rotate.yaml rotate-pass {mode} {only}\necho \"SWEEP-RC $?\"\nexit 0\n"
    ));
    assert!(log.contains("SWEEP-DONE"), "{log}");
    let writes = log
        .lines()
        .find_map(|l| l.strip_prefix("WRITES "))
        .and_then(|n| n.trim().parse().ok())
        .expect("WRITES line");
    let points = log
        .lines()
        .filter(|l| l.starts_with("POINT "))
        .map(|l| l.trim_end().to_string())
        .collect();
    (writes, points, vm)
}
