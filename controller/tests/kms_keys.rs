//! `kms` keys end to end on the host: `volctl kms-server` runs as a real
//! process on 127.0.0.1 with TLS from a test CA; volumes are LUKS2 image
//! files converged through the CLI and checked with the cryptsetup CLI.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn config(dir: &Path, port: u16, extra: &str) -> PathBuf {
    let p = dir.join(if extra.is_empty() {
        "kms-only.yaml"
    } else {
        "kms-and-more.yaml"
    });
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning: {{diskSelector: {{match: '!system_disk'}}, maxSize: 1GiB}}\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      kms: {{endpoint: 'https://localhost:{port}'}}\n{extra}"),
    )
    .unwrap();
    p
}

fn converge(img: &Path, cfg: &Path, ca: &Path) -> Output {
    converge_json(
        "data",
        img,
        cfg,
        &["--kms-ca-file", &ca.display().to_string()],
    )
}

#[test]
fn kms_key_enrols_unlocks_and_survives_a_kms_outage() {
    let img = image(40);
    let dir = img.dir.path();
    let pki = kms::test_pki::generate();
    let server = KmsServer::start(dir, &pki);
    let ca = dir.join("ca.pem");
    let static_key = "    - slot: 1\n      static: {passphrase: recovery-pass}\n";

    // Enrol: the token keeps the sealed blob and the endpoint; no secret in clear.
    let cfg = config(dir, server.port, "");
    let o = json_ok(&converge(&img.path, &cfg, &ca));
    assert_eq!(o["plan"]["actions"][1]["kind"], "kms");
    let token = first_token(&img.path);
    assert_eq!(token["kind"], "kms");
    assert_eq!(
        token["data"]["endpoint"],
        format!("https://localhost:{}", server.port)
    );
    let sealed = token["data"]["sealedData"].as_str().unwrap().to_string();
    // One log line per request at the default level: operation, node, key
    // id, peer; never the sealed blob or a key.
    let log = server.log();
    let line = log
        .lines()
        .find(|l| l.contains("sealed op=\"seal\""))
        .unwrap_or_else(|| panic!("{log}"));
    assert!(
        line.contains("INFO") && line.contains(UUID) && line.contains("key_id="),
        "{line}"
    );
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(!log.contains(&sealed[..16]), "the blob is in no log line");
    assert!(
        !log.contains('\u{1b}'),
        "no colour codes off a terminal: {log}"
    );

    // The passphrase is base64 of the 32-byte key the KMS unseals for this node.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = kms::client::KmsClient::new(
        &format!("https://localhost:{}", server.port),
        kms::client::ClientOptions {
            ca_pem: Some(pki.ca_pem.clone()),
            ..Default::default()
        },
    );
    use base64::Engine;
    let blob = base64::engine::general_purpose::STANDARD
        .decode(sealed)
        .unwrap();
    let key = rt.block_on(client.unseal(UUID, &blob)).unwrap();
    assert_eq!(key.len(), 32);
    let pass = base64::engine::general_purpose::STANDARD.encode(key.as_slice());
    assert!(opens(&img.path, 0, pass.as_bytes()));
    assert!(rt
        .block_on(client.unseal("another-node-uuid-0000-000000000000", &blob))
        .is_err());

    // A fresh process unlocks through the KMS: one KDF run, nothing to do.
    let o = json_ok(&converge(&img.path, &cfg, &ca));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]));
    assert_eq!(o["kdf_runs"], 1);

    // Add a static recovery key while the KMS is up.
    let cfg2 = config(dir, server.port, static_key);
    json_ok(&converge(&img.path, &cfg2, &ca));
    assert_eq!(slots(&img.path), vec![0, 1]);

    // KMS down: with only the kms key, the error names the slot and the outage.
    assert!(server.stop().success(), "graceful shutdown exits 0");
    let before = sha256_file(&img.path);
    let o = converge(&img.path, &cfg, &ca);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no configured key opens")
            && err.contains("0 (kms)")
            && err.contains("unreachable"),
        "{err}"
    );
    // With the static key, the volume opens and the kms slot is kept.
    let o = json_ok(&converge(&img.path, &cfg2, &ca));
    assert_eq!(o["unlocked_by"], serde_json::json!([1, "static"]));
    assert_eq!(slots(&img.path), vec![0, 1]);
    assert_eq!(sha256_file(&img.path), before);
}

#[test]
fn kms_unreachable_at_format_writes_nothing() {
    let img = image(40);
    let dir = img.dir.path();
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    std::fs::write(dir.join("ca.pem"), kms::test_pki::generate().ca_pem).unwrap();
    let cfg = config(dir, port, "");
    let o = converge(&img.path, &cfg, &dir.join("ca.pem"));
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("cannot format") && err.contains("nothing was written"),
        "{err}"
    );
    assert!(!is_luks(&img.path));
}

/// `volctl kms-server` with 48 file descriptors and a connection cap above
/// that: a flood of idle connections runs it out of descriptors (EMFILE).
/// It backs off and logs that at most once a second (it used to spin and
/// log millions of lines), closes the idle connections at the handshake
/// deadline, and serves a real client once the flood is gone.
#[test]
fn out_of_file_descriptors_the_kms_server_backs_off_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let pki = kms::test_pki::generate();
    std::fs::write(dir.path().join("tls.crt"), &pki.server_cert_pem).unwrap();
    std::fs::write(dir.path().join("tls.key"), &pki.server_key_pem).unwrap();
    let keys = dir.path().join("keys");
    let line = Command::new(env!("CARGO_BIN_EXE_volctl"))
        .args(["kms-server", "genkey"])
        .output()
        .unwrap()
        .stdout;
    std::fs::write(&keys, line).unwrap();
    std::fs::set_permissions(&keys, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let log = dir.path().join("server.log");
    let port = free_port();
    let mut child = Command::new("prlimit")
        .args(["--nofile=48:48", "--"])
        .arg(env!("CARGO_BIN_EXE_volctl"))
        .args([
            "kms-server",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--master-key-file",
        ])
        .arg(&keys)
        .arg("--tls-cert")
        .arg(dir.path().join("tls.crt"))
        .arg("--tls-key")
        .arg(dir.path().join("tls.key"))
        .args(["--max-connections", "200", "--handshake-timeout", "1"])
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    wait_for_port(port);
    let flood: Vec<std::net::TcpStream> = (0..120)
        .filter_map(|_| std::net::TcpStream::connect(("127.0.0.1", port)).ok())
        .collect();
    std::thread::sleep(std::time::Duration::from_secs(3));
    drop(flood);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let client = kms::client::KmsClient::new(
        &format!("https://localhost:{port}"),
        kms::client::ClientOptions {
            ca_pem: Some(pki.ca_pem.clone()),
            ..Default::default()
        },
    );
    let sealed = rt.block_on(client.seal(UUID, &[9; 32]));
    let _ = child.kill();
    let _ = child.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    let warnings = text.lines().filter(|l| l.contains("backing off")).count();
    assert!(sealed.is_ok(), "served after the flood: {sealed:?}\n{text}");
    assert!(
        (1..=8).contains(&warnings),
        "{warnings} back-off lines:\n{text}"
    );
}

fn wait_for_port(port: u16) {
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("kms-server did not listen on {port}");
}

/// A config whose slot 0 is a `kms` key over `endpoints` (replicas),
/// waiting `timeout` for an answer.
fn replicas_config(dir: &Path, name: &str, ports: &[u16], timeout: &str) -> PathBuf {
    let endpoints: Vec<String> = ports
        .iter()
        .map(|p| format!("'https://localhost:{p}'"))
        .collect();
    let key = format!(
        "    - slot: 0\n      kms: {{endpoints: [{}], timeout: {timeout}}}\n",
        endpoints.join(", ")
    );
    data_config(dir, name, &key)
}

/// The user volume `data` with `keys` (YAML list items), written to
/// `dir/name`.
fn data_config(dir: &Path, name: &str, keys: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning: {{diskSelector: {{match: '!system_disk'}}, maxSize: 1GiB}}\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n{keys}"),
    )
    .unwrap();
    p
}

/// Replicas of one KMS (`endpoints`; one master key behind both): a first
/// endpoint that takes connections and never answers (a hung server)
/// costs the unlock a stagger, not its timeouts. The key's `timeout: 3s`
/// would run out before the client's own connect timeout (5 s) if the
/// replicas were asked one after another. The replica that answered is
/// the token's; with it stopped the other unseals; with both stopped the
/// error names every endpoint and what it did. Prints the unlock times
/// with and without the hung replica (the figures, not an assertion).
#[test]
fn kms_replicas_are_raced_and_a_hung_one_does_not_stall_the_unlock() {
    let img = image(40);
    let dir = img.dir.path();
    let pki = kms::test_pki::generate();
    let a = KmsServer::start(dir, &pki);
    let b = KmsServer::start(dir, &pki);
    let ca = dir.join("ca.pem");
    // Connections complete in the kernel's backlog; nothing ever answers.
    let hung = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let hung_port = hung.local_addr().unwrap().port();
    let cfg = replicas_config(dir, "replicas.yaml", &[hung_port, a.port, b.port], "3s");
    let o = json_ok(&converge(&img.path, &cfg, &ca));
    assert_eq!(o["plan"]["actions"][1]["kind"], "kms");
    let token = first_token(&img.path);
    assert_eq!(
        token["data"]["endpoint"],
        format!("https://localhost:{}", a.port),
        "sealed by the first replica that answered"
    );

    let timed = |cfg: &Path| {
        let started = std::time::Instant::now();
        let o = json_ok(&converge(&img.path, cfg, &ca));
        assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");
        assert_eq!(o["kdf_runs"], 1, "{o}");
        started.elapsed()
    };
    let with_hung = timed(&cfg);
    // The plan says who answered and who did not.
    let o = json_ok(&converge(&img.path, &cfg, &ca));
    let notes = o["plan"]["notes"].to_string();
    assert!(
        notes.contains(&format!(
            "https://localhost:{} answered; https://localhost:{hung_port}: no answer yet",
            a.port
        )),
        "{notes}"
    );
    // Without the hung replica the set of servers differs, and so does the
    // key's binding: timed as a plan (the same unlock, one KDF run).
    let live_only = replicas_config(dir, "live.yaml", &[a.port, b.port], "3s");
    let ca_arg = ca.display().to_string();
    let started = std::time::Instant::now();
    let (img_arg, cfg_arg) = (
        img.path.display().to_string(),
        live_only.display().to_string(),
    );
    let o = volctl(&[
        "plan",
        "--volume",
        "data",
        "--device",
        &img_arg,
        "-f",
        &cfg_arg,
        "--kms-ca-file",
        &ca_arg,
    ]);
    let live_time = started.elapsed();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    eprintln!(
        "FIGURES unlock through KMS replicas: a hung one first {:.0} ms, live ones only {:.0} ms (stagger {} ms)",
        with_hung.as_secs_f64() * 1e3,
        live_time.as_secs_f64() * 1e3,
        providers::KMS_STAGGER.as_millis()
    );

    let (a_port, b_port) = (a.port, b.port);
    assert!(a.stop().success());
    timed(&cfg);
    assert!(b.stop().success());
    let before = sha256_file(&img.path);
    let o = converge(&img.path, &cfg, &ca);
    assert_eq!(o.status.code(), Some(1));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("none of the 3 KMS endpoints answered"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "https://localhost:{hung_port}: no answer within 3s"
        )),
        "{err}"
    );
    for port in [a_port, b_port] {
        assert!(
            err.contains(&format!("KMS https://localhost:{port} unreachable")),
            "{err}"
        );
    }
    assert_eq!(sha256_file(&img.path), before, "nothing written");
    drop(hung);
}

/// A volume with two `kms` keys of two KMSes (two servers, not replicas
/// of one), each awaited 60 s.
fn two_kms_config(dir: &Path, ports: [u16; 2]) -> PathBuf {
    let keys: String = ports
        .iter()
        .enumerate()
        .map(|(slot, port)| {
            format!("    - slot: {slot}\n      kms: {{endpoint: 'https://localhost:{port}', timeout: 60s}}\n")
        })
        .collect();
    data_config(dir, "two-kms.yaml", &keys)
}

/// Keys that ask a server are asked at once, not one after another: with
/// the first key's server hung, the second's answer opens the volume (one
/// KDF run) and the plan says the first gave no answer yet; asked in turn,
/// the unlock would have waited the first key's 60 s and said nothing.
/// Then as a boot asks them, with its deadline for key servers (1 s)
/// shorter than the keys' own: both servers hung, the unlock ends at the
/// boot's deadline and says so, nothing written. Prints the unlock's time.
#[test]
fn kms_keys_of_two_servers_are_asked_at_once_and_the_boot_s_deadline_cuts_their_wait() {
    let img = image(40);
    let dir = img.dir.path();
    let pki = kms::test_pki::generate();
    let (dir_a, dir_b) = (dir.join("a"), dir.join("b"));
    std::fs::create_dir_all(&dir_a).unwrap();
    std::fs::create_dir_all(&dir_b).unwrap();
    let (a, b) = (
        KmsServer::start(&dir_a, &pki),
        KmsServer::start(&dir_b, &pki),
    );
    let ca = dir_a.join("ca.pem");
    let cfg = two_kms_config(dir, [a.port, b.port]);
    let o = json_ok(&converge(&img.path, &cfg, &ca));
    assert_eq!(common::slots(&img.path), vec![0, 1], "{o}");

    let a_port = a.port;
    assert!(a.stop().success());
    // Connections complete in the kernel's backlog; nothing ever answers.
    let hung_a = std::net::TcpListener::bind(("127.0.0.1", a_port)).unwrap();
    let started = std::time::Instant::now();
    let o = json_ok(&converge(&img.path, &cfg, &ca));
    let took = started.elapsed();
    assert_eq!(o["unlocked_by"], serde_json::json!([1, "kms"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "{o}");
    assert_eq!(
        o["plan"]["notes"],
        serde_json::json!([{"note": "opened", "slot": 1, "kind": "kms", "report": "slot 0 (kms): no answer yet"}]),
        "{o}"
    );
    eprintln!(
        "FIGURES unlock by two KMS keys, the first one's server hung (its timeout 60 s): {:.0} ms",
        took.as_secs_f64() * 1e3
    );

    let b_port = b.port;
    assert!(b.stop().success());
    let hung_b = std::net::TcpListener::bind(("127.0.0.1", b_port)).unwrap();
    let doc = api_types::parse_str("two-kms.yaml", &std::fs::read_to_string(&cfg).unwrap());
    let spec = controller::volume::VolumeSpec::from_documents(&doc.documents, "data").unwrap();
    let mut env = common::env();
    env.kms.ca_pem = Some(pki.ca_pem.clone());
    env.key_servers_until = Some(std::time::Instant::now() + std::time::Duration::from_secs(1));
    let before = sha256_file(&img.path);
    let e = common::run(&spec, &img.path, &env, controller::converge::Mode::Apply)
        .unwrap_err()
        .to_string();
    for slot in ["slot 0 (kms)", "slot 1 (kms)"] {
        assert!(e.contains(slot), "{e}");
    }
    assert!(e.contains(providers::KMS_BOOT_DEADLINE), "{e}");
    assert_eq!(sha256_file(&img.path), before, "nothing written");
    drop((hung_a, hung_b));
}
