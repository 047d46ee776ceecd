//! Helpers for tests on real LUKS2 headers in sparse image files, checked
//! with the `cryptsetup` CLI.
#![allow(dead_code)]

pub mod agent;
pub mod cuts;
pub mod ext4fs;
pub mod header_editor;
pub mod storm;
pub mod tpm_cuts;

use api_types::parse_str;
use controller::converge::{converge, open_device, ConvergeError, Mode, Outcome};
use controller::volume::VolumeSpec;
use providers::{ProviderEnv, StateSalt};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A node UUID with enough entropy.
pub const UUID: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";
/// Small test KDF costs (never the defaults).
pub const PBKDF: &str = "pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}";

/// A sparse image of `mib` MiB in a fresh temp dir.
pub struct Image {
    pub dir: tempfile::TempDir,
    pub path: PathBuf,
}

pub fn image(mib: u64) -> Image {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("disk.img");
    let f = std::fs::File::create(&path).unwrap();
    f.set_len(mib << 20).unwrap();
    Image { dir, path }
}

/// An EPHEMERAL config with the given key lines (YAML list items).
pub fn config(keys: &[&str]) -> VolumeSpec {
    let mut y = format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n");
    for k in keys {
        y.push_str(&format!("    - {k}\n"));
    }
    let p = parse_str("test.yaml", &y);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    VolumeSpec::from_documents(&p.documents, "EPHEMERAL").unwrap()
}

pub fn env() -> ProviderEnv {
    ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Nobody,
        asker: None,
        node_uuid: Ok(UUID.into()),
        state_salt: Some(StateSalt::new([0x5a; 32])),
        kms: Default::default(),
        tpm: Default::default(),
        key_servers_until: None,
    }
}

pub fn run(
    spec: &VolumeSpec,
    path: &Path,
    env: &ProviderEnv,
    mode: Mode,
) -> Result<Outcome, ConvergeError> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let device = open_device(spec, path, mode)?;
    rt.block_on(converge(spec, device, env, mode))
}

pub fn apply(spec: &VolumeSpec, path: &Path) -> Outcome {
    run(spec, path, &env(), Mode::Apply).unwrap()
}

/// Runs `cmd`, asserting it succeeds (its stderr in the failure message).
pub fn run_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `cryptsetup luksDump --dump-json-metadata`.
pub fn dump(path: &Path) -> serde_json::Value {
    let out = run_ok(
        Command::new("cryptsetup")
            .args(["luksDump", "--dump-json-metadata"])
            .arg(path),
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The first LUKS2 token of the image at `img`, as `cryptsetup` dumps it.
pub fn first_token(img: &Path) -> serde_json::Value {
    let d = dump(img);
    d["tokens"]
        .as_object()
        .and_then(|t| t.values().next())
        .cloned()
        .unwrap_or_else(|| panic!("no token in {d}"))
}

/// Keyslot numbers per the cryptsetup CLI.
pub fn slots(path: &Path) -> Vec<u32> {
    let mut v: Vec<u32> = dump(path)["keyslots"]
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.parse().unwrap())
        .collect();
    v.sort();
    v
}

/// Runs `cryptsetup ARGS PATH AFTER` with `pass` on stdin.
pub fn cryptsetup_with_pass(
    args: &[&str],
    path: &Path,
    after: &[&Path],
    pass: &[u8],
) -> std::process::Output {
    let mut c = Command::new("cryptsetup")
        .args(args)
        .arg(path)
        .args(after)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    c.stdin.take().unwrap().write_all(pass).unwrap();
    c.wait_with_output().unwrap()
}

/// Whether `cryptsetup open --test-passphrase --key-slot N` accepts `pass`.
pub fn opens(path: &Path, slot: u32, pass: &[u8]) -> bool {
    test_passphrase(path, slot, pass).status.success()
}

/// What `cryptsetup open --test-passphrase --key-slot N` says of `pass`
/// (exit status 2: no key with it).
pub fn test_passphrase(path: &Path, slot: u32, pass: &[u8]) -> std::process::Output {
    let slot = slot.to_string();
    let args = [
        "open",
        "--test-passphrase",
        "--key-file",
        "-",
        "--key-slot",
        &slot,
    ];
    cryptsetup_with_pass(&args, path, &[], pass)
}

/// Whether the cryptsetup CLI finds a LUKS header at `path`.
pub fn is_luks(path: &Path) -> bool {
    Command::new("cryptsetup")
        .arg("isLuks")
        .arg(path)
        .status()
        .unwrap()
        .success()
}

/// The volume key, read with the cryptsetup CLI through slot `slot`.
pub fn volume_key(path: &Path, slot: u32, pass: &[u8]) -> String {
    let slot = slot.to_string();
    let args = [
        "luksDump",
        "--dump-volume-key",
        "--batch-mode",
        "--key-file",
        "-",
        "--key-slot",
        &slot,
    ];
    let out = cryptsetup_with_pass(&args, path, &[], pass);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let i = text
        .find("MK dump:")
        .or_else(|| text.find("Volume key:"))
        .expect("volume key in dump");
    text[i..]
        .split_whitespace()
        .skip(2)
        .filter(|w| w.len() == 2)
        .collect()
}

/// Runs cryptsetup with `pass` on stdin; asserts success.
pub fn cryptsetup(args: &[&str], path: &Path, pass: &[u8]) {
    cryptsetup_then(args, path, &[], pass)
}

/// Like [`cryptsetup`], with arguments after the device.
pub fn cryptsetup_then(args: &[&str], path: &Path, after: &[&Path], pass: &[u8]) {
    let out = cryptsetup_with_pass(args, path, after, pass);
    assert!(
        out.status.success(),
        "cryptsetup {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A process's output as text.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Runs the `volctl` binary with the test node UUID and no salt file from
/// the environment.
pub fn volctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(args)
        .env("VOLCTL_NODE_UUID", UUID)
        .env_remove("VOLCTL_STATE_SALT_FILE")
        .output()
        .unwrap()
}

/// `volctl converge --volume VOLUME --device IMG -f CFG -o json EXTRA…`.
pub fn converge_json(volume: &str, img: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    verb_json("converge", volume, img, cfg, extra)
}

/// `volctl plan` of `volume` on `img` with `cfg`, JSON output.
pub fn plan_json(volume: &str, img: &Path, cfg: &Path, extra: &[&str]) -> std::process::Output {
    verb_json("plan", volume, img, cfg, extra)
}

fn verb_json(
    verb: &str,
    volume: &str,
    img: &Path,
    cfg: &Path,
    extra: &[&str],
) -> std::process::Output {
    let (img, cfg) = (img.display().to_string(), cfg.display().to_string());
    let mut args = vec![
        verb, "--volume", volume, "--device", &img, "-f", &cfg, "-o", "json",
    ];
    args.extend_from_slice(extra);
    volctl(&args)
}

/// The JSON on stdout of a run that must have succeeded.
pub fn json_ok(o: &std::process::Output) -> serde_json::Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// The nodeID passphrase of EPHEMERAL.
pub fn node_pass() -> Vec<u8> {
    format!("{UUID}EPHEMERAL").into_bytes()
}

pub fn sha256_file(path: &Path) -> String {
    use sha2::Digest;
    hex(&sha2::Sha256::digest(std::fs::read(path).unwrap()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// Rewrites the LUKS2 JSON metadata of both header copies with `edit`,
/// recomputing their checksums: what an attacker with write access to the
/// disk can do. The result is a header libcryptsetup accepts as valid.
pub fn tamper_json(path: &Path, edit: impl Fn(&mut serde_json::Value)) {
    use sha2::Digest;
    let mut disk = std::fs::read(path).unwrap();
    let hdr_size = usize::try_from(u64::from_be_bytes(disk[8..16].try_into().unwrap())).unwrap();
    for off in [0, hdr_size] {
        let copy = &mut disk[off..off + hdr_size];
        let json_area = &copy[4096..];
        let end = json_area.iter().position(|&b| b == 0).unwrap();
        let mut v: serde_json::Value = serde_json::from_slice(&json_area[..end]).unwrap();
        edit(&mut v);
        let text = serde_json::to_vec(&v).unwrap();
        copy[4096..].fill(0);
        copy[4096..4096 + text.len()].copy_from_slice(&text);
        copy[448..512].fill(0);
        let sum = sha2::Sha256::digest(&copy[..]);
        copy[448..480].copy_from_slice(&sum);
    }
    std::fs::write(path, disk).unwrap();
}

/// `volctl kms-server` running as a real process on 127.0.0.1 with TLS.
pub struct KmsServer {
    child: std::process::Child,
    /// The port it listens on.
    pub port: u16,
    log: std::sync::Arc<std::sync::Mutex<String>>,
}

impl KmsServer {
    /// Starts `volctl kms-server` on a free port of 127.0.0.1 with the TLS
    /// material of `pki` and the master key file `dir/keys` (made when absent,
    /// so a restart in the same `dir` keeps the keys).
    pub fn start(dir: &Path, pki: &kms::test_pki::TestPki) -> KmsServer {
        Self::start_with(dir, pki, &[])
    }

    /// [`Self::start`] with more arguments (`--store file:…`, `--client-ca …`;
    /// `--listen ADDR` instead of a free port).
    pub fn start_with(dir: &Path, pki: &kms::test_pki::TestPki, extra: &[&str]) -> KmsServer {
        std::fs::write(dir.join("ca.pem"), &pki.ca_pem).unwrap();
        std::fs::write(dir.join("tls.crt"), &pki.server_cert_pem).unwrap();
        std::fs::write(dir.join("tls.key"), &pki.server_key_pem).unwrap();
        let keys = dir.join("keys");
        if !keys.exists() {
            let out = Command::new(env!("CARGO_BIN_EXE_volctl"))
                .args(["kms-server", "genkey"])
                .output()
                .unwrap();
            std::fs::write(&keys, &out.stdout).unwrap();
            std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600))
                .unwrap();
        }
        let listen = match extra.contains(&"--listen") {
            true => vec![],
            false => vec!["--listen", "127.0.0.1:0"],
        };
        let mut child = Command::new(env!("CARGO_BIN_EXE_volctl"))
            .arg("kms-server")
            .args(listen)
            .arg("--master-key-file")
            .arg(&keys)
            .args([
                "--tls-cert",
                &dir.join("tls.crt").display().to_string(),
                "--tls-key",
                &dir.join("tls.key").display().to_string(),
            ])
            .args(extra)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut reader = std::io::BufReader::new(child.stderr.take().unwrap());
        let mut seen = String::new();
        let port = loop {
            let mut line = String::new();
            let n = std::io::BufRead::read_line(&mut reader, &mut line).unwrap();
            assert!(n > 0, "kms-server ended before listening:\n{seen}");
            seen.push_str(&line);
            if let Some(addr) = line.trim().strip_prefix("volctl kms-server listening on ") {
                break addr
                    .rsplit(':')
                    .next()
                    .and_then(|p| p.parse().ok())
                    .unwrap();
            }
        };
        // Keep reading its log (so it never writes to a closed pipe).
        let log = std::sync::Arc::new(std::sync::Mutex::new(seen));
        let kept = log.clone();
        std::thread::spawn(move || {
            for line in std::io::BufRead::lines(reader).map_while(Result::ok) {
                let mut l = kept.lock().unwrap();
                l.push_str(&line);
                l.push('\n');
            }
        });
        KmsServer { child, port, log }
    }

    /// The server with node records in `dir/nodes.redb` and client
    /// certificates required (from `pki`), on `port` (0: a free one); the
    /// node's and the admin's certificates and keys written to `dir`
    /// (`node.pem`, `node.key`, `admin.pem`, `admin.key`, `ca.pem`).
    pub fn with_records(dir: &Path, pki: &kms::test_pki::TestPki, port: u16) -> KmsServer {
        let store = format!("file:{}", dir.join("nodes.redb").display());
        Self::with_store(dir, pki, port, &[&store])
    }

    /// [`Self::with_records`] over `store[0]` (`--store`, e.g. `etcd://…`),
    /// with the rest of `store` as more arguments.
    pub fn with_store(
        dir: &Path,
        pki: &kms::test_pki::TestPki,
        port: u16,
        store: &[&str],
    ) -> KmsServer {
        for (name, pem) in [
            ("node.pem", &pki.client_cert_pem),
            ("node.key", &pki.client_key_pem),
            ("admin.pem", &pki.admin_cert_pem),
            ("admin.key", &pki.admin_key_pem),
            ("ca.pem", &pki.ca_pem),
        ] {
            std::fs::write(dir.join(name), pem).unwrap();
        }
        let ca = dir.join("ca.pem").display().to_string();
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec!["--store", store[0], "--client-ca", &ca, "--listen", &listen];
        args.extend_from_slice(&store[1..]);
        KmsServer::start_with(dir, pki, &args)
    }

    /// Its process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// What it logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Stops it with SIGTERM; returns its exit status.
    pub fn stop(mut self) -> std::process::ExitStatus {
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.child.wait().unwrap()
    }
}

impl Drop for KmsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Builds the write-cutting shim: after `VOLCTL_CUT_AFTER` writes to the
/// file `VOLCTL_CUT_PATH`, the next write lands half and the process exits
/// at once (137), as if the power failed mid-write.
pub fn cut_shim(dir: &Path) -> PathBuf {
    let src = dir.join("cut.c");
    std::fs::write(&src, include_str!("../fault/cut_writes.c")).unwrap();
    let so = dir.join("cut.so");
    run_ok(
        Command::new("cc")
            .args(["-shared", "-fPIC", "-O2", "-o"])
            .arg(&so)
            .arg(&src)
            .arg("-ldl"),
    );
    so
}

/// Whether `cryptsetup open --test-passphrase` accepts `pass` in any slot.
pub fn opens_any(path: &Path, pass: &[u8]) -> bool {
    cryptsetup_with_pass(
        &["open", "--test-passphrase", "--key-file", "-"],
        path,
        &[],
        pass,
    )
    .status
    .success()
}

/// A port on 127.0.0.1 that nothing listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Writes `path` as `volctl boot` leaves its status: STATE ready, mounted
/// at `state`, and each `(name, device, encrypted)` ready on its device.
pub fn booted_status(path: &Path, state: &Path, volumes: &[(&str, &Path, bool)]) {
    use controller::node::status::{BootStatus, Phase, VolumeStatus};
    let mut st = VolumeStatus::new("STATE", "STATE", false);
    st.phase = Phase::Ready;
    st.mount_point = Some(state.display().to_string());
    let others = volumes.iter().map(|(name, device, encrypted)| {
        let mut v = VolumeStatus::new(name, name, *encrypted);
        v.phase = Phase::Ready;
        v.device = Some(device.display().to_string());
        v
    });
    BootStatus {
        config_source: "test".into(),
        volumes: std::iter::once(st).chain(others).collect(),
        ..Default::default()
    }
    .save(path)
    .unwrap();
}

/// Bytes from hex digits (a `volume_key`).
pub fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// Decrypts `data`, the start of a data segment, in place with the
/// aes-xts-plain64 volume key `vk` (512-byte sectors, the IV counting
/// sectors from the segment's start): what dm-crypt would read.
pub fn xts_decrypt(data: &mut [u8], vk: &[u8]) {
    // Optimised even in debug builds (`cipher-speed`): instantiated here,
    // the generic XTS code would run unoptimised, seconds per image.
    assert!(
        cipher_speed::aes_xts_plain64_decrypt(vk, data),
        "an XTS key of {} bytes",
        vk.len()
    );
}

/// Whether `data` starts with an ext2/3/4 superblock (magic 0xEF53).
pub fn is_ext4(data: &[u8]) -> bool {
    data.get(1080..1082) == Some(&[0x53, 0xEF][..])
}

/// `len` bytes of a fixed pattern with no runs (data whose every byte a
/// check can compare).
pub fn patterned(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 11).to_le_bytes()[0])
        .collect()
}

/// `volctl serve` on `addr` for a booted node (`status`), with the node
/// API certificates of `pki` (`volctl gen` output) and `extra` arguments;
/// stderr as `stderr` says.
pub fn volctl_serve(
    addr: &str,
    status: &Path,
    pki: &Path,
    extra: &[&str],
    stderr: Stdio,
) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(["serve", "--listen", addr, "--status-file"])
        .arg(status)
        .arg("--tls-cert")
        .arg(pki.join("server.crt"))
        .arg("--tls-key")
        .arg(pki.join("server.key"))
        .arg("--client-ca")
        .arg(pki.join("ca.crt"))
        .args(["--disk", "/nonexistent", "--reboot-command", "true"])
        .args(extra)
        .env("VOLCTL_NODE_UUID", UUID)
        .env("RUST_LOG", "info")
        .stderr(stderr)
        .spawn()
        .unwrap()
}
