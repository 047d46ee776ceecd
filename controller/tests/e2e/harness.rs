//! The VM suite's harness: a VM (one qemu run per boot on one disk image),
//! what a boot printed, the guest's helpers (TPM, KMS, node API), and the
//! configs and guest scripts the scenarios share.

use crate::common;
use controller::node::loopdev::LoopDevice;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::Instant;

pub(crate) use common::UUID;

pub(crate) fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

pub(crate) fn setup() {
    static DONE: OnceLock<()> = OnceLock::new();
    DONE.get_or_init(|| {
        let st = Command::new(root().join("tests/vm/setup.sh"))
            .arg(env!("CARGO_BIN_EXE_volctl"))
            .status()
            .unwrap();
        assert!(st.success(), "VM setup failed");
    });
}

pub(crate) struct Vm {
    pub(crate) name: &'static str,
    pub(crate) dir: PathBuf,
    pub(crate) disk: PathBuf,
    pub(crate) boots: u32,
    pub(crate) started: Instant,
    /// More qemu arguments (e.g. UEFI firmware and a TPM).
    pub(crate) qemu_extra: String,
    /// Seconds a run may take.
    pub(crate) timeout: u32,
    /// Another kernel image (the bzImage, for UEFI firmware).
    pub(crate) kernel: Option<PathBuf>,
}

/// What one boot printed.
pub(crate) struct Boot {
    pub(crate) boot_rc: i32,
    pub(crate) status: serde_json::Value,
    pub(crate) log: String,
}

impl Boot {
    pub(crate) fn all_ready(&self) -> bool {
        self.status["volumes"].as_array().is_some_and(|v| {
            v.iter()
                .all(|v| v["phase"] == "ready" || v["phase"] == "not-managed")
        })
    }
    pub(crate) fn keyslots(&self, name: &str) -> Vec<u64> {
        self.volume(name)["keyslots"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_u64().unwrap())
            .collect()
    }
    pub(crate) fn volume(&self, name: &str) -> &serde_json::Value {
        self.status["volumes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == name)
            .unwrap_or_else(|| panic!("no volume {name} in {}", self.status))
    }
    pub(crate) fn phase(&self, name: &str) -> String {
        self.volume(name)["phase"].as_str().unwrap().to_string()
    }
    /// Text between `BEGIN name` and `END name` markers.
    pub(crate) fn section(&self, name: &str) -> String {
        section(&self.log, name)
    }
}

/// Text between `BEGIN name` and `END name` markers in a console log.
pub(crate) fn section(log: &str, name: &str) -> String {
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
    pub(crate) fn new(name: &'static str, parts: &[(&str, u64)]) -> Self {
        Self::sized(name, parts, 256)
    }

    /// A VM whose disk is `mib` MiB, laid out as `parts` say.
    pub(crate) fn sized(name: &'static str, parts: &[(&str, u64)], mib: u64) -> Self {
        setup();
        let dir = root().join("target/vm/work").join(name);
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let disk = dir.join("disk.img");
        std::fs::File::create(&disk)
            .unwrap()
            .set_len(mib << 20)
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

    pub(crate) fn write(&self, name: &str, text: &str) {
        std::fs::write(self.dir.join("job").join(name), text).unwrap();
    }

    /// Boots once: `volctl boot` with `boot_args`, then `after` (shell).
    pub(crate) fn boot(&mut self, boot_args: &str, after: &str) -> Boot {
        self.boot_with("", boot_args, after)
    }

    /// Boots once, running `before` (shell) before `volctl boot`.
    pub(crate) fn boot_with(&mut self, before: &str, boot_args: &str, after: &str) -> Boot {
        self.boot_typing(before, boot_args, after, &[])
    }

    /// Boots once; whenever the console shows the next `(prompt, answer)`'s
    /// prompt, the answer is typed on it (the serial console is a socket
    /// then, read and written here).
    pub(crate) fn boot_typing(
        &mut self,
        before: &str,
        boot_args: &str,
        after: &str,
        typing: &[(&str, &str)],
    ) -> Boot {
        std::fs::create_dir_all(self.dir.join("job")).unwrap();
        let script = format!(
            "{before}\nvolctl boot --disk /dev/vda {boot_args} > /tmp/boot.out 2>&1\nrc=$?\ncat /tmp/boot.out\necho \"BOOT-RC $rc\"\n[ $rc -ne 0 ] && {{ echo 'BEGIN dmesg'; dmesg | tail -n 30; echo 'END dmesg'; }}\necho 'BEGIN status'\nvolctl status -o json 2>/dev/null\necho 'END status'\n{after}\nvolctl close >/dev/null 2>&1\nexit 0\n"
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
    pub(crate) fn run_job(&mut self, script: &str) -> String {
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
    pub(crate) fn run_command(&mut self) -> Command {
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
    pub(crate) fn finished(&self, ok: bool, log: String, stderr: &str) -> Boot {
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
    pub(crate) fn keep_log(&self, log: &str) {
        let logs = root().join("target/vm/logs");
        std::fs::create_dir_all(&logs).unwrap();
        let name = format!("{}-boot{}.log", self.name, self.boots);
        std::fs::write(logs.join(name), log).unwrap();
    }

    /// Gives the next boots a network card on qemu's user network
    /// (`restrict=on`) whose only way in is a free port on the host's
    /// 127.0.0.1, forwarded to the guest's node API (50000); returns it.
    pub(crate) fn forward_node_api(&mut self) -> u16 {
        let port = common::free_port();
        self.qemu_extra = format!("-netdev user,id=n0,restrict=on,hostfwd=tcp:127.0.0.1:{port}-:50000 -device virtio-net-pci,netdev=n0,romfile=");
        port
    }

    /// Attaches a partition of the image on the host.
    pub(crate) fn partition(&self, label: &str) -> LoopDevice {
        let p = controller::node::disks::by_label(std::slice::from_ref(&self.disk)).unwrap();
        let p = &p[label];
        LoopDevice::attach(&self.disk, p.offset, p.size).unwrap()
    }

    /// What `cryptsetup luksDump` says of the partition labelled `label`.
    pub(crate) fn luks_dump(&self, label: &str) -> String {
        let p = self.partition(label);
        let dump = Command::new("cryptsetup")
            .args(["luksDump"])
            .arg(p.path())
            .output()
            .unwrap();
        text(&dump.stdout)
    }

    /// (header sequence id, keyslots per the cryptsetup CLI) of a partition.
    pub(crate) fn header(&self, label: &str) -> (u64, Vec<u32>) {
        let l = self.partition(label);
        let seq = match controller::luks2::header::read(l.path()).unwrap() {
            controller::luks2::header::Probe::Luks2(h) => h.seqid,
            controller::luks2::header::Probe::None => panic!("{label} has no LUKS2 header"),
        };
        (seq, common::slots(l.path()))
    }

    pub(crate) fn summary(&self, what: &str) {
        println!(
            "SCENARIO {:<28} ok  {} boot(s), {:.0} s  — {what}",
            self.name,
            self.boots,
            self.started.elapsed().as_secs_f64()
        );
    }
}

/// A scenario that passed leaves only its console logs (`target/vm/logs`):
/// its disk images and job files go, so the suite's disk use stays that of
/// one scenario; a failed one keeps them to be looked at.
impl Drop for Vm {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

pub(crate) fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the VM with its console on `sock`, typing each answer once its
/// prompt shows; returns (the guest's job exited 0, the console, stderr).
pub(crate) fn type_on_console(
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

pub(crate) const CONFIG: &str = include_str!("configs/node.yaml");

/// Talos documents beside the system volumes: an encrypted swap volume
/// (its key locked to STATE), a directory volume made on EPHEMERAL.
pub(crate) const EXTRA_VOLUMES: &str = include_str!("configs/extra-volumes.yaml");

pub(crate) const LAYOUT: &[(&str, u64)] = &[
    ("META", 1),
    ("STATE", 64),
    ("EPHEMERAL", 64),
    ("persistence", 0),
];

/// EPHEMERAL with the given keys (YAML list items); STATE nodeID; persistence static.
pub(crate) fn config_with_ephemeral(keys: &[&str]) -> String {
    let mut s = String::from("apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n    - slot: 0\n      nodeID: {}\n---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n");
    for k in keys {
        s.push_str(&format!("    - {k}\n"));
    }
    s.push_str("---\napiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 1024, iterations: 4}\n  keys:\n    - slot: 0\n      static: {passphrase: persistence-pass}\n");
    s
}

pub(crate) const OLD: &str = "{slot: 0, static: {passphrase: old-pass}}";
pub(crate) const NODE: &str = "{slot: 1, nodeID: {}}";
pub(crate) const NEW: &str = "{slot: 2, static: {passphrase: new-pass}}";

impl Vm {
    /// Whether `pass` opens `slot` of `label`, per `cryptsetup open --test-passphrase` on the host.
    pub(crate) fn opens(&self, label: &str, slot: u32, pass: &[u8]) -> bool {
        let l = self.partition(label);
        common::opens(l.path(), slot, pass)
    }

    /// What `cryptsetup open --test-passphrase` said, for a failure message:
    /// its exit status (2: no key with this passphrase) and its errors.
    pub(crate) fn why_not_opened(&self, label: &str, slot: u32, pass: &[u8]) -> String {
        let l = self.partition(label);
        let out = common::test_passphrase(l.path(), slot, pass);
        format!(
            "cryptsetup on slot {slot}: {} {}",
            out.status,
            text(&out.stderr)
        )
    }
}

/// swtpm serving one qemu run as its TPM (`-tpmdev emulator`); its state
/// directory persists across runs, like a real TPM's NV memory. SeaBIOS's
/// ACPI tables break with a TPM here, so these boots use UEFI firmware
/// (OVMF), which boots the bzImage rather than the ELF vmlinux: `code` and
/// the template of its variable store (`vars_template`, copied once per VM)
/// name the OVMF build; another build measures other values into PCR 0, as
/// a firmware update does.
pub(crate) fn with_tpm(vm: &mut Vm, code: &str, vars_template: &str) -> KillOnDrop {
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
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Where the guest dials the KMS: an address on qemu's user network that
/// exists only as a forwarding rule (see [`with_kms`]).
pub(crate) const GUEST_KMS: &str = "10.0.2.100:4050";

/// Gives the next boot a network card on qemu's user network with
/// `restrict=on` (the guest reaches nothing outside qemu) and one rule:
/// a guest connection to [`GUEST_KMS`] runs `proxy.sh`, which socat
/// connects to `volctl kms-server` on the host's 127.0.0.1:`port`. A `cmd:`
/// rule runs one proxy per connection; a `tcp:` one would be one stream
/// opened when qemu starts.
pub(crate) fn with_kms(vm: &mut Vm, port: u16) {
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
pub(crate) const GUEST_NET: &str =
    "i=0; while [ ! -e /sys/class/net/eth0 ] && [ $i -lt 100 ]; do sleep 0.05; i=$((i+1)); done
ip link set lo up; ip link set eth0 up; ip addr add 10.0.2.15/24 dev eth0";

/// The appliance (NeuralDrive's): STATE and EPHEMERAL open unattended,
/// `persistence` only by a passphrase typed at the console or its
/// recovery key.
pub(crate) const APPLIANCE: &str = include_str!("configs/appliance.yaml");

/// The node's side of an API-driven boot: boot, then put the node API's
/// certificate on STATE (as an image build would) if it is not there, and
/// serve until a reboot is asked for; then power off (the harness starts
/// the VM again: a real reboot).
pub(crate) const SERVING_JOB: &str = include_str!("guest/serving-job.sh");

/// The admin's workstation: `volctl -n 127.0.0.1:PORT …` (the port is
/// forwarded by qemu to the guest's 50000).
pub(crate) struct Admin {
    pub(crate) node: String,
    pub(crate) pki: PathBuf,
    pub(crate) rebooted: std::cell::Cell<bool>,
}

impl Admin {
    pub(crate) fn volctl(&self, args: &[&str]) -> std::process::Output {
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
    pub(crate) fn ok(&self, args: &[&str]) -> String {
        let o = self.volctl(args);
        assert!(o.status.success(), "volctl {args:?}: {}", text(&o.stderr));
        text(&o.stdout)
    }

    /// Waits until `args` succeeds (the guest is still booting).
    pub(crate) fn when_up(&self, args: &[&str]) -> std::process::Output {
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
    pub(crate) fn node_api_pki(&self) -> PathBuf {
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
    pub(crate) fn serve_boot(&mut self, pki: &Path, drive: impl FnOnce(&Admin)) -> Boot {
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

impl Vm {
    /// Boots once and cuts the power (qemu killed with SIGKILL) as soon as
    /// the console shows `marker`; returns the console.
    pub(crate) fn boot_cut_when(&mut self, boot_args: &str, after: &str, marker: &str) -> String {
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
pub(crate) fn config_with_persistence(in_place: bool) -> String {
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

pub(crate) const SUMS: &str = "cd /persistence && echo 'BEGIN sums' && find . -type f ! -path './lost+found*' | sort | xargs sha256sum && echo 'END sums'; cd /";

/// Waits for the online run the boot started (none when the boot finished
/// the reencryption itself: a cut in its last step) and prints its record.
pub(crate) const WAIT_ONLINE: &str = "i=0; while [ -f /run/volctl/reencrypt/persistence.json ] && ! grep -q '\"state\": \"done\"' /run/volctl/reencrypt/persistence.json && [ $i -lt 400 ]; do sleep 0.5; i=$((i+1)); done; echo 'BEGIN online'; cat /run/volctl/reencrypt/persistence.json 2>/dev/null; echo; echo 'END online'";

/// The progress record (JSON) in a console section; the run's own progress
/// lines share the console.
pub(crate) fn progress_record(section: &str) -> serde_json::Value {
    let json = &section[section.find('{').unwrap()..=section.rfind('}').unwrap()];
    serde_json::from_str(json).unwrap()
}

pub(crate) const EMPTY_SHA256: &str =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

/// The start of persistence's data area, decrypted with the volume key
/// `vk` (hex): whether it reads as an ext4 filesystem.
pub(crate) fn data_reads_as_ext4(vm: &Vm, vk_hex: &str) -> bool {
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

/// One VM's sweep of operation `op` (`rotate`, `decrypt`) in `mode`: the
/// writes counted, the POINT lines, the VM.
pub(crate) fn online_sweep(name: &'static str, op: &str, mode: &str) -> (usize, Vec<String>, Vm) {
    let mut vm = Vm::new(name, &[("META", 1)]);
    vm.timeout = 1500;
    vm.write(
        "rotate.yaml",
        "apiVersion: v1alpha1\nkind: VolumeConfig\nname: persistence\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}\n  keys:\n    - slot: 0\n      static: {passphrase: rotate-pass}\n",
    );
    vm.write(
        "sweep.sh",
        include_str!("../../../tests/vm/online_every_write.sh"),
    );
    let only = std::env::var("VOLCTL_E2E_ONLY").unwrap_or_default();
    let debug = std::env::var("VOLCTL_SWEEP_DEBUG").unwrap_or_default();
    let log = vm.run_job(&format!(
        "VOLCTL_SWEEP_DEBUG={debug} sh /job/sweep.sh {op} /job/rotate.yaml rotate-pass {mode} {only}\necho \"SWEEP-RC $?\"\nexit 0\n"
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
