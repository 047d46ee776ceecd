//! The node API against a real `volctl serve` process on 127.0.0.1: the
//! admin applies and reads, a reader only reads, every other caller is
//! refused (with a clear error, a log line on the node, and nothing
//! changed), oversized requests are refused, and the server keeps serving
//! after each refusal and under 200 concurrent calls. PKI from `volctl gen`.

mod common;

use common::*;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// A node: STATE is a directory, EPHEMERAL a converged LUKS2 image, the
/// status file points at both; `volctl serve` runs on a free port.
struct Node {
    dir: tempfile::TempDir,
    state: PathBuf,
    addr: String,
    server: Child,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.server.kill();
        let _ = self.server.wait();
    }
}

fn volctl_gen(out: &Path, extra: &[&str]) {
    let mut args = vec!["gen", "--out", out.to_str().unwrap(), "--san", "127.0.0.1"];
    args.extend_from_slice(extra);
    let o = volctl(&args);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

impl Node {
    fn start() -> Node {
        let img = image(40);
        apply(
            &config(&["{slot: 0, static: {passphrase: old-pass}}"]),
            &img.path,
        );
        // The config in force adds a key: `plan` shows it.
        Node::serving(img, NEW_CONFIG, &[])
    }

    /// `volctl serve` for a node whose EPHEMERAL is `img`, booted with
    /// `state_config` on STATE; `extra`: more `serve` arguments.
    fn serving(img: Image, state_config: &str, extra: &[&str]) -> Node {
        let dir = img.dir;
        let state = dir.path().join("state");
        std::fs::create_dir_all(&state).unwrap();
        std::fs::write(state.join("config.yaml"), state_config).unwrap();
        let status = dir.path().join("status.json");
        booted_status(&status, &state, &[("EPHEMERAL", &img.path, true)]);
        let pki = dir.path().join("pki");
        volctl_gen(&pki, &["--api-key"]);
        let addr = format!("127.0.0.1:{}", free_port());
        let api_key = pki.join("api.key").display().to_string();
        let mut args = vec!["--api-key-file", api_key.as_str()];
        args.extend_from_slice(extra);
        let server = volctl_serve(&addr, &status, &pki, &args, Stdio::piped());
        let node = Node {
            dir,
            state,
            addr,
            server,
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(&node.addr).is_err() {
            assert!(Instant::now() < deadline, "volctl serve did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        node
    }

    fn pki(&self, name: &str) -> String {
        self.dir.path().join("pki").join(name).display().to_string()
    }

    /// `volctl -n ADDR ARGS…` with the client flags given.
    fn call(&self, client: &[&str], args: &[&str]) -> Output {
        let mut a = vec!["-n", &self.addr];
        a.extend_from_slice(client);
        a.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_volctl"))
            .args(&a)
            .env_remove("VOLCTLCONFIG")
            .env("HOME", self.dir.path())
            .output()
            .unwrap()
    }

    fn admin(&self, args: &[&str]) -> Output {
        self.call(&["--volctlconfig", &self.pki("admin.volctlconfig")], args)
    }

    fn reader(&self, args: &[&str]) -> Output {
        self.call(&["--volctlconfig", &self.pki("reader.volctlconfig")], args)
    }

    fn config_file(&self, name: &str, body: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    }

    /// Stops the server and returns what it logged.
    fn stop(mut self) -> String {
        let _ = self.server.kill();
        let _ = self.server.wait();
        let mut log = String::new();
        self.server
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        log
    }

    fn still_serves(&self) {
        let o = self.admin(&["status", "-o", "json"]);
        assert!(o.status.success(), "{}", text(&o.stderr));
    }
}

const NEW_CONFIG: &str = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}\n  keys:\n    - {slot: 0, static: {passphrase: old-pass}}\n    - {slot: 1, static: {passphrase: new-pass}}\n";

#[test]
fn the_admin_applies_and_reads_a_reader_only_reads() {
    let node = Node::start();
    let cfg = node.config_file("node.yaml", NEW_CONFIG);
    // Reader: status and version, nothing else; nothing changes.
    let st = node.reader(&["status", "-o", "json"]);
    assert!(st.status.success(), "{}", text(&st.stderr));
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    assert_eq!(v["volumes"][1]["name"], "EPHEMERAL");
    assert!(node.reader(&["version"]).status.success());
    // plan: on the node's device with the node's config, read-only.
    let image = std::fs::read(node.dir.path().join("disk.img")).unwrap();
    let plan = node.reader(&[
        "plan",
        "--volume",
        "EPHEMERAL",
        "-o",
        "json",
        "--detailed-exitcode",
    ]);
    assert_eq!(plan.status.code(), Some(2), "{}", text(&plan.stderr));
    let p: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    assert_eq!(p["kdf_runs"], 1, "{p}");
    assert_eq!(p["plan"]["actions"][0]["action"], "add", "{p}");
    assert_eq!(
        std::fs::read(node.dir.path().join("disk.img")).unwrap(),
        image,
        "plan wrote nothing"
    );
    let refused = node.reader(&["apply-config", "-f", &cfg, "--mode", "staged"]);
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("apply-config needs the admin role"),
        "{}",
        text(&refused.stderr)
    );
    assert!(
        !node.state.join("config.pending.yaml").exists(),
        "nothing stored"
    );
    let reset = node.reader(&["reset", "--system-labels-to-wipe", "EPHEMERAL"]);
    assert!(text(&reset.stderr).contains("needs the admin role"));

    // Admin: the change report names the volume; staged for the next boot.
    let ok = node.admin(&["apply-config", "-f", &cfg, "--mode", "staged"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    let out = text(&ok.stdout);
    assert!(out.starts_with(&format!("NODE {}\n", node.addr)), "{out}");
    assert!(out.contains("EPHEMERAL"), "{out}");
    let pending = std::fs::read_to_string(node.state.join("config.pending.yaml")).unwrap();
    assert!(pending.contains("new-pass"));

    // An invalid config: refused, naming the client's file and line.
    let bad = node.config_file("bad.yaml", "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - {slot: 40, static: {passphrase: x}}\n");
    let o = node.admin(&["apply-config", "-f", &bad, "--mode", "staged"]);
    let err = text(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("bad.yaml") && err.contains("slot 40"), "{err}");
    let log = node.stop();
    assert!(log.contains("refused: role too low"), "{log}");
    assert!(!log.contains("new-pass"), "no secret in the node's log");
}

#[test]
fn strangers_are_refused_and_the_server_keeps_serving() {
    let node = Node::start();
    let other = node.dir.path().join("other-pki");
    volctl_gen(&other, &[]);
    let ca = node.pki("ca.crt");
    // A certificate from the node's own CA, with the admin role, expired.
    let node_ca = tls::pki::Ca::load(
        &std::fs::read_to_string(node.pki("ca.crt")).unwrap(),
        &std::fs::read_to_string(node.pki("ca.key")).unwrap(),
    )
    .unwrap();
    let old = node_ca
        .client("admin", tls::identity::Role::Admin, -1)
        .unwrap();
    let old_crt = node.dir.path().join("expired.crt");
    std::fs::write(&old_crt, &old.cert_pem).unwrap();
    let old_key = write_key(node.dir.path(), "expired.key", &old.key_pem);
    let cases: Vec<(&str, Vec<String>, &str)> = vec![
        (
            "no certificate, no key",
            vec!["--ca".into(), ca.clone()],
            "no client certificate and no API key",
        ),
        (
            "a certificate from another CA",
            vec![
                "--ca".into(),
                ca.clone(),
                "--cert".into(),
                other.join("admin.crt").display().to_string(),
                "--key".into(),
                other.join("admin.key").display().to_string(),
            ],
            "refused this client's certificate",
        ),
        (
            "an expired certificate from the node's CA",
            vec![
                "--ca".into(),
                ca.clone(),
                "--cert".into(),
                old_crt.display().to_string(),
                "--key".into(),
                old_key.clone(),
            ],
            "refused this client's certificate",
        ),
        (
            "a wrong API key",
            vec![
                "--ca".into(),
                ca.clone(),
                "--api-key-file".into(),
                write_key(
                    node.dir.path(),
                    "wrong.key",
                    "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                ),
            ],
            "wrong API key",
        ),
        (
            "the node's certificate checked against another CA",
            vec![
                "--ca".into(),
                other.join("ca.crt").display().to_string(),
                "--api-key-file".into(),
                node.pki("api.key"),
            ],
            "is not signed by the CA in --ca",
        ),
    ];
    for (what, client, want) in &cases {
        let c: Vec<&str> = client.iter().map(String::as_str).collect();
        let o = node.call(&c, &["status"]);
        assert!(!o.status.success(), "{what}: accepted");
        let err = text(&o.stderr);
        assert!(err.contains(want), "{what}: {err}");
        node.still_serves();
    }
    // Each CA has a name of its own, and the error names both.
    let o = node.call(
        &[
            "--ca",
            other.join("ca.crt").to_str().unwrap(),
            "--api-key-file",
            &node.pki("api.key"),
        ],
        &["version"],
    );
    let err = text(&o.stderr);
    let names: Vec<&str> = err
        .split('`')
        .filter(|w| w.starts_with("volctl CA "))
        .collect();
    assert_eq!(names.len(), 2, "{err}");
    assert_ne!(names[0], names[1], "{err}");
    // The client is told its own certificate has expired.
    let o = node.call(
        &[
            "--ca",
            &ca,
            "--cert",
            old_crt.to_str().unwrap(),
            "--key",
            &old_key,
        ],
        &["version"],
    );
    let err = text(&o.stderr);
    assert!(
        err.contains("warning: 127.0.0.1:") && err.contains("this client's certificate expired on"),
        "{err}"
    );
    // The right API key is the admin.
    let o = node.call(
        &["--ca", &ca, "--api-key-file", &node.pki("api.key")],
        &["version"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let key = std::fs::read_to_string(node.pki("api.key")).unwrap();
    let log = node.stop();
    assert!(log.contains("wrong API key"), "{log}");
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(log.contains("expired"), "the node says why: {log}");
    assert!(!log.contains(key.trim()), "the API key is in no log line");
}

fn write_key(dir: &Path, name: &str, key: &str) -> String {
    use std::os::unix::fs::OpenOptionsExt;
    let p = dir.join(name);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&p)
        .unwrap();
    std::io::Write::write_all(&mut f, key.as_bytes()).unwrap();
    p.display().to_string()
}

/// Resident and peak memory of a process, in KiB (VmRSS, VmHWM).
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

#[test]
fn oversized_requests_are_refused_and_200_concurrent_calls_are_served() {
    let node = Node::start();
    let (idle, _) = memory_kib(node.server.id());
    let big = node.config_file("big.yaml", &"# padding\n".repeat(200_000));
    let o = node.admin(&["apply-config", "-f", &big, "--mode", "staged"]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("too large"), "{}", text(&o.stderr));
    node.still_serves();

    let creds = node_api::client::Credentials {
        trust: node_api::client::Trust::Ca(std::fs::read(node.pki("ca.crt")).unwrap()),
        identity: Some((
            std::fs::read(node.pki("reader.crt")).unwrap(),
            zeroize::Zeroizing::new(std::fs::read(node.pki("reader.key")).unwrap()),
        )),
        api_key: None,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let served = rt.block_on(async {
        let calls = (0..200).map(|_| {
            let (creds, addr) = (creds.clone(), node.addr.clone());
            tokio::spawn(async move {
                let mut r =
                    node_api::client::Remote::connect(&addr, &creds, Duration::from_secs(60))
                        .await
                        .map_err(|e| e.to_string())?;
                let (c, req) = r.call(node_api::proto::StatusRequest {});
                c.status(req).await.map_err(|s| s.to_string())
            })
        });
        let mut ok = 0;
        for c in calls.collect::<Vec<_>>() {
            match c.await.unwrap() {
                Ok(_) => ok += 1,
                Err(e) => eprintln!("call failed: {e}"),
            }
        }
        ok
    });
    assert_eq!(served, 200, "every concurrent call was served");
    let (_, peak) = memory_kib(node.server.id());
    eprintln!("volctl serve memory: {idle} KiB resident at idle, {peak} KiB peak after 200 concurrent calls");
    node.still_serves();
}

/// A disk image with a blank STATE (and META) partition: `volctl boot`
/// without a config waits in maintenance mode.
fn blank_disk(dir: &Path) -> PathBuf {
    let disk = dir.join("disk.img");
    std::fs::File::create(&disk)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    let st = Command::new("sgdisk")
        .args(["-n1:0:+1M", "-c1:META", "-n2:0:+32M", "-c2:STATE"])
        .arg(&disk)
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(st.success());
    disk
}

#[test]
fn a_boot_in_maintenance_mode_takes_a_config_over_the_network_from_a_pinned_client() {
    use std::io::BufRead;
    let dir = tempfile::tempdir().unwrap();
    let disk = blank_disk(dir.path());
    let addr = format!("127.0.0.1:{}", free_port());
    let mut boot = Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(["boot", "--disk"])
        .arg(&disk)
        .args(["--api-listen", &addr, "--maintenance-timeout", "60"])
        .arg("--status-file")
        .arg(dir.path().join("run/status.json"))
        .arg("--state-mount")
        .arg(dir.path().join("state"))
        .env("VOLCTL_NODE_UUID", UUID)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(boot.stderr.take().unwrap()).lines();
    let fingerprint = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| l.split("fingerprint ").nth(1).map(|f| f.trim().to_string()))
        .expect("the boot prints its certificate fingerprint");
    let cfg = dir.path().join("node.yaml");
    std::fs::write(
        &cfg,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      nodeID: {{}}\n"),
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let client = |args: &[&str]| {
        let mut a = vec!["-n", addr.as_str()];
        a.extend_from_slice(args);
        Command::new(env!("CARGO_BIN_EXE_volctl"))
            .args(&a)
            .env("HOME", dir.path())
            .output()
            .unwrap()
    };
    // Another fingerprint: refused before anything is sent.
    let wrong = "ab".repeat(32);
    let o = client(&[
        "apply-config",
        "--insecure",
        "--fingerprint",
        &wrong,
        "-f",
        &cfg,
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("not the pinned"),
        "{}",
        text(&o.stderr)
    );
    // An invalid config: the admin is told why, the boot keeps waiting.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(&bad, "apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n  keys: []\n").unwrap();
    let o = client(&[
        "apply-config",
        "--insecure",
        "--fingerprint",
        &fingerprint,
        "-f",
        bad.to_str().unwrap(),
    ]);
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("bad.yaml"), "{}", text(&o.stderr));
    // A config that does not say what STATE is (here: nothing at all, or
    // only a user volume) would format STATE plain: refused, still waiting.
    for (name, body) in [
        ("empty.yaml", ""),
        ("user-only.yaml", "apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning:\n  diskSelector:\n    match: \"!system_disk\"\n  minSize: 4MiB\n"),
    ] {
        let f = dir.path().join(name);
        std::fs::write(&f, body).unwrap();
        let o = client(&[
            "apply-config",
            "--insecure",
            "--fingerprint",
            &fingerprint,
            "-f",
            f.to_str().unwrap(),
        ]);
        assert!(!o.status.success(), "{name} was delivered");
        let err = text(&o.stderr);
        assert!(err.contains("must say what STATE is"), "{name}: {err}");
        assert!(err.contains("nothing was stored"), "{name}: {err}");
    }
    // The right node, pinned: delivered; the boot goes on with it.
    let o = client(&[
        "apply-config",
        "--insecure",
        "--fingerprint",
        &fingerprint,
        "-f",
        &cfg,
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    let _ = boot.wait();
    assert!(
        rest.iter()
            .any(|l| l.contains("maintenance mode: config received")),
        "{rest:?}"
    );
}

const RECOVERY_CONFIG: &str = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}\n  keys:\n    - {slot: 0, static: {passphrase: old-pass}}\n    - {slot: 9, recovery: {}}\n";

/// The key held for EPHEMERAL in the node's run-time directory, if any.
fn held_key(node: &Node) -> Option<String> {
    let record = node.dir.path().join("recovery/EPHEMERAL.json");
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(record).ok()?).unwrap();
    Some(v["keys"][0]["key"].as_str().unwrap().to_string())
}

#[test]
fn a_held_recovery_key_is_fetched_once_and_replaced_until_then() {
    use std::os::unix::fs::PermissionsExt;
    let node = Node::start();
    let disk = node.dir.path().join("disk.img");
    let cfg = node.config_file("recovery.yaml", RECOVERY_CONFIG);
    let run_dir = node.dir.path().display().to_string();
    let converge = || {
        let o = volctl(&[
            "converge",
            "--volume",
            "EPHEMERAL",
            "--device",
            disk.to_str().unwrap(),
            "-f",
            &cfg,
            "-o",
            "json",
            "--hold-recovery-key",
            &run_dir,
        ]);
        assert!(o.status.success(), "{}", text(&o.stderr));
        serde_json::from_slice::<serde_json::Value>(&o.stdout).unwrap()
    };
    let dump = || {
        text(
            &run_ok(
                Command::new("cryptsetup")
                    .args(["luksDump", "--dump-json-metadata"])
                    .arg(&disk),
            )
            .stdout,
        )
    };

    // Enrolled with nobody to show it to: held 0600 in a 0700 folder, the
    // token marked, the key in nothing volctl printed.
    let first = converge();
    let held = held_key(&node).expect("held");
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(
        mode(&node.dir.path().join("recovery/EPHEMERAL.json")),
        0o600
    );
    assert_eq!(mode(&node.dir.path().join("recovery")), 0o700);
    assert!(dump().contains("\"held\":true"), "{}", dump());
    assert!(!first.to_string().contains(&held));
    assert!(opens(&disk, 9, held.as_bytes()));

    // Not fetched, and the static key opened the volume: a fresh one.
    let second = converge();
    assert!(
        second["plan"]["actions"]
            .to_string()
            .contains("nobody has fetched"),
        "{second}"
    );
    let fresh = held_key(&node).expect("held again");
    assert_ne!(fresh, held);
    assert!(!opens(&disk, 9, held.as_bytes()), "the unseen key is gone");

    // A reader may not fetch; the admin gets it exactly once.
    let o = node.reader(&["recovery-key", "fetch", "--volume", "EPHEMERAL"]);
    assert!(!o.status.success());
    assert!(held_key(&node).is_some(), "a refused fetch takes nothing");
    let o = node.admin(&["recovery-key", "fetch", "--volume", "EPHEMERAL"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).ends_with(&format!("\nEPHEMERAL slot 9: {fresh}\n")),
        "{}",
        text(&o.stdout)
    );
    assert!(
        opens(&disk, 9, fresh.as_bytes()),
        "cryptsetup opens it as printed"
    );
    assert!(held_key(&node).is_none(), "no longer held");
    assert!(!dump().contains("\"held\""), "{}", dump());
    let again = node.admin(&["recovery-key", "fetch", "--volume", "EPHEMERAL"]);
    assert!(!again.status.success());
    assert!(
        text(&again.stderr).contains("no recovery key is held"),
        "{}",
        text(&again.stderr)
    );

    // Seen: the next run keeps it, one KDF run.
    let third = converge();
    assert_eq!(third["plan"]["actions"], serde_json::json!([]), "{third}");
    assert_eq!(third["kdf_runs"], 1);
    assert!(opens(&disk, 9, fresh.as_bytes()));
    let log = node.stop();
    assert!(log.contains("held recovery key handed out"), "{log}");
    assert!(!log.contains(&fresh));
}

#[test]
fn gen_renew_reissues_from_the_same_ca_and_clients_keep_working() {
    let node = Node::start();
    let pki = node.dir.path().join("pki");
    let read = |f: &str| std::fs::read(pki.join(f)).unwrap();
    let (ca, server, admin) = (
        read("ca.crt"),
        read("server.crt"),
        read("admin.volctlconfig"),
    );
    let kept = node.config_file(
        "old-admin.volctlconfig",
        &String::from_utf8(admin.clone()).unwrap(),
    );
    std::fs::set_permissions(&kept, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let o = volctl(&[
        "gen",
        "--out",
        pki.to_str().unwrap(),
        "--san",
        "127.0.0.1",
        "--renew",
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    assert!(
        text(&o.stdout).contains("reissued from its CA"),
        "{}",
        text(&o.stdout)
    );
    assert_eq!(read("ca.crt"), ca, "the same CA");
    assert_ne!(read("server.crt"), server, "a new server certificate");
    assert_ne!(
        read("admin.volctlconfig"),
        admin,
        "a new client certificate"
    );
    let mode = std::fs::metadata(pki.join("admin.key"))
        .unwrap()
        .permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    assert!(!pki.join("server.crt.new").exists());
    // The old client config and the new one both reach the node.
    for cfg in [kept.as_str(), &node.pki("admin.volctlconfig")] {
        let o = node.call(&["--volctlconfig", cfg], &["version"]);
        assert!(o.status.success(), "{cfg}: {}", text(&o.stderr));
        assert!(!text(&o.stderr).contains("warning"), "{}", text(&o.stderr));
    }
    // --ca is the client's flag: gen refuses it rather than ignore it.
    let o = volctl(&[
        "gen",
        "--out",
        pki.to_str().unwrap(),
        "--san",
        "x",
        "--ca",
        "ca.crt",
    ]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("--ca is a client flag"),
        "{}",
        text(&o.stderr)
    );
    // Without --renew nothing is overwritten.
    let o = volctl(&["gen", "--out", pki.to_str().unwrap(), "--san", "127.0.0.1"]);
    assert!(!o.status.success());
    assert_eq!(read("ca.crt"), ca);
}

#[test]
fn gen_makes_its_folder_private_whatever_the_umask() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("pki");
    let cmd = format!(
        "umask 000; exec {} gen --out {} --san 127.0.0.1",
        env!("CARGO_BIN_EXE_volctl"),
        out.display()
    );
    let o = Command::new("sh").arg("-c").arg(&cmd).output().unwrap();
    assert!(o.status.success(), "{}", text(&o.stderr));
    let mode = std::fs::metadata(&out).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o700, "the folder holding ca.key");
    let key = std::fs::metadata(out.join("ca.key"))
        .unwrap()
        .permissions()
        .mode()
        & 0o777;
    assert_eq!(key, 0o600);
}

#[test]
fn many_nodes_are_called_at_once_and_answer_in_the_order_given() {
    let node = Node::start();
    // A node that takes the connection and never answers: it times out.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap().to_string();
    let script = format!(
        "{} --volctlconfig {} -n {silent_addr} -n {} -n {} --timeout 2 --parallel 8 version 2>&1",
        env!("CARGO_BIN_EXE_volctl"),
        node.pki("admin.volctlconfig"),
        node.addr,
        node.addr,
    );
    let o = Command::new("bash")
        .args(["-c", &script])
        .env_remove("VOLCTLCONFIG")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "one node failed");
    let out = text(&o.stdout);
    let lines: Vec<&str> = out
        .lines()
        .filter(|l| l.starts_with("error:") || l.starts_with("NODE "))
        .collect();
    assert_eq!(lines.len(), 3, "{out}");
    assert!(
        lines[0].starts_with(&format!("error: {silent_addr}")),
        "{out}"
    );
    assert_eq!(lines[1], format!("NODE {}", node.addr), "{out}");
    assert_eq!(lines[2], format!("NODE {}", node.addr), "{out}");
    drop(silent);
}

/// `volctl -n NODE tpm allow`: the admin allows a known update's PCR 7 on
/// the node's device with the node's config (a TPM key on swtpm); a reader
/// is refused with nothing written; the node logs who did it.
#[test]
fn the_admin_allows_a_known_update_for_the_node_s_tpm_key() {
    let tpm = providers::test_swtpm::Swtpm::start();
    let img = image(40);
    let keys = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {type: argon2id, memoryKiB: 32, iterations: 4}\n  keys:\n    - {slot: 0, tpm: {options: {pcrs: [7]}}}\n    - {slot: 1, static: {passphrase: old-pass}}\n";
    let cfg = img.dir.path().join("tpm.yaml");
    std::fs::write(&cfg, keys).unwrap();
    let tcti = tpm.tcti();
    json_ok(&converge_json(
        "EPHEMERAL",
        &img.path,
        &cfg,
        &["--tpm-tcti", &tcti],
    ));
    let node = Node::serving(img, keys, &["--tpm-tcti", &tcti]);
    let pcr = format!("7={}", "ab".repeat(32));
    let allow = [
        "tpm",
        "allow",
        "--volume",
        "EPHEMERAL",
        "--pcr",
        &pcr,
        "-o",
        "json",
    ];
    let image = std::fs::read(node.dir.path().join("disk.img")).unwrap();
    let refused = node.reader(&allow);
    assert!(
        text(&refused.stderr).contains("tpm allow needs the admin role"),
        "{}",
        text(&refused.stderr)
    );
    assert_eq!(
        std::fs::read(node.dir.path().join("disk.img")).unwrap(),
        image
    );

    let o = node.admin(&allow);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(out["plan"]["actions"][0]["action"], "write-token", "{out}");
    assert_eq!(out["kdf_runs"], 1, "{out}");
    let token = first_token(&node.dir.path().join("disk.img"));
    assert_eq!(token["data"]["allowed"][1]["7"], "ab".repeat(32), "{token}");
    let log = node.stop();
    assert!(
        log.contains("TPM keys allowed PCR values ahead of an update"),
        "{log}"
    );
}
