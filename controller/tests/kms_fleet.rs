//! A KMS that knows its nodes: `volctl kms-server --store file:…` as a
//! real process on 127.0.0.1 (TLS, client certificates from a test CA),
//! nodes converged through the CLI, the admin verbs `volctl kms nodes |
//! revoke | rotate | retire` with an admin certificate.

mod common;

use common::*;
use std::path::{Path, PathBuf};
use std::process::Output;

const NODE_A: &str = "4c4c4544-0038-5910-8057-b4c04f4d3732";
const NODE_B: &str = "9b2f0c6e-5d4a-4e1b-8f3c-7a6d5e4c3b2a";

fn start(dir: &Path, pki: &kms::test_pki::TestPki, port: u16) -> KmsServer {
    KmsServer::with_records(dir, pki, port)
}

/// A volume whose slot 0 is a kms key at `port` (and `more` keys).
fn config(dir: &Path, port: u16, more: &str) -> PathBuf {
    let p = dir.join(format!("kms-{port}-{}.yaml", more.len()));
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning: {{diskSelector: {{match: '!system_disk'}}, maxSize: 1GiB}}\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      kms: {{endpoint: 'https://localhost:{port}', timeout: 5s}}\n{more}"),
    )
    .unwrap();
    p
}

/// `volctl VERB` of the volume on `img` as node `uuid`, with its client certificate.
fn as_node(verb: &str, (img, cfg): (&Path, &Path), dir: &Path, uuid: &str) -> Output {
    as_node_with(verb, (img, cfg), dir, uuid, &[])
}

/// [`as_node`] with more arguments.
fn as_node_with(
    verb: &str,
    (img, cfg): (&Path, &Path),
    dir: &Path,
    uuid: &str,
    more: &[&str],
) -> Output {
    let arg = |f: &str| dir.join(f).display().to_string();
    let extra = [
        "--kms-ca-file".to_string(),
        arg("ca.pem"),
        "--kms-client-cert".into(),
        arg("node.pem"),
        "--kms-client-key".into(),
        arg("node.key"),
        "--node-uuid".into(),
        uuid.into(),
    ];
    let mut extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    extra.extend_from_slice(more);
    match verb {
        "plan" => plan_json("data", img, cfg, &extra),
        _ => converge_json("data", img, cfg, &extra),
    }
}

/// `volctl kms VERB ARGS… --server … --ca … --cert CERT --key KEY`.
fn kms_admin(dir: &Path, port: u16, verb: &[&str], who: &str) -> Output {
    let arg = |f: &str| dir.join(f).display().to_string();
    let mut args = vec!["kms"];
    args.extend_from_slice(verb);
    let (server, ca, cert, key) = (
        format!("https://localhost:{port}"),
        arg("ca.pem"),
        arg(&format!("{who}.pem")),
        arg(&format!("{who}.key")),
    );
    args.extend_from_slice(&[
        "--server", &server, "--ca", &ca, "--cert", &cert, "--key", &key,
    ]);
    volctl(&args)
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

#[test]
fn a_revoked_node_opens_nothing_again_and_the_others_are_unaffected() {
    let (a, b) = (image(40), image(40));
    let dir = a.dir.path();
    let pki = kms::test_pki::generate();
    let server = start(dir, &pki, 0);
    let cfg = config(dir, server.port, "");
    json_ok(&as_node("converge", (&a.path, &cfg), dir, NODE_A));
    json_ok(&as_node("converge", (&b.path, &cfg), dir, NODE_B));

    let table = ok(&kms_admin(dir, server.port, &["nodes"], "admin"));
    for uuid in [NODE_A, NODE_B] {
        let line = table
            .lines()
            .find(|l| l.starts_with(uuid))
            .unwrap_or_else(|| panic!("{table}"));
        assert!(line.contains("active"), "{table}");
    }
    // A node's own certificate is no admin's.
    let o = kms_admin(dir, server.port, &["revoke", "--node", NODE_B], "node");
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("needs the admin role"),
        "{}",
        text(&o.stderr)
    );

    println!(
        "{}",
        ok(&kms_admin(
            dir,
            server.port,
            &["revoke", "--node", NODE_A],
            "admin"
        ))
    );
    let before = sha256_file(&a.path);
    let o = as_node("converge", (&a.path, &cfg), dir, NODE_A);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    eprintln!("{err}");
    assert!(err.contains("0 (kms)") && err.contains("revoked"), "{err}");
    assert_eq!(sha256_file(&a.path), before, "nothing written");

    let o = json_ok(&as_node("converge", (&b.path, &cfg), dir, NODE_B));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");
    assert_eq!(o["kdf_runs"], 1);
    let table = ok(&kms_admin(dir, server.port, &["nodes"], "admin"));
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(NODE_A) && l.contains("revoked")),
        "{table}"
    );
    eprintln!("{table}");
    assert!(server.log().contains("node revoked"), "an audit line");
}

#[test]
fn rotation_rewraps_at_the_next_converge_and_retirement_waits_for_every_node() {
    let (a, b) = (image(40), image(40));
    let dir = a.dir.path();
    let pki = kms::test_pki::generate();
    let server = start(dir, &pki, 0);
    let cfg = config(dir, server.port, "");
    // Node B keeps a static key beside: it opens first, and the KMS slot
    // must still learn that its blob is old.
    let with_static = config(
        dir,
        server.port,
        "    - slot: 1\n      static: {passphrase: fallback-pass}\n",
    );
    json_ok(&as_node("converge", (&a.path, &cfg), dir, NODE_A));
    json_ok(&as_node("converge", (&b.path, &with_static), dir, NODE_B));
    let old = std::fs::read_to_string(dir.join("keys")).unwrap();
    let old_id = old.trim().split(':').next().unwrap().to_string();

    // A new key in the key file, the server restarted, then rotated.
    let port = server.port;
    assert!(server.stop().success());
    let line = volctl(&["kms-server", "genkey"]).stdout;
    std::fs::write(dir.join("keys"), format!("{old}{}", text(&line))).unwrap();
    let server = start(dir, &pki, port);
    let rotated = ok(&kms_admin(dir, server.port, &["rotate"], "admin"));
    eprintln!("{rotated}");
    assert!(
        rotated.contains(&format!("rotated: {old_id} →")),
        "{rotated}"
    );

    let p = as_node("plan", (&a.path, &cfg), dir, NODE_A);
    let plan = json_ok(&p).to_string();
    eprintln!("{plan}");
    assert!(plan.contains("rewrap"), "{plan}");
    let before = first_token(&a.path)["data"]["sealedData"].clone();
    let o = json_ok(&as_node("converge", (&a.path, &cfg), dir, NODE_A));
    assert_eq!(o["kdf_runs"], 1, "a rewrap writes a token, no keyslot: {o}");
    assert_ne!(first_token(&a.path)["data"]["sealedData"], before);
    let o = json_ok(&as_node("converge", (&a.path, &cfg), dir, NODE_A));
    assert_eq!(
        o["plan"]["actions"],
        serde_json::json!([]),
        "converged: {o}"
    );

    let o = kms_admin(dir, server.port, &["retire", "--version", &old_id], "admin");
    assert!(!o.status.success());
    let err = text(&o.stderr);
    eprintln!("{err}");
    assert!(
        err.contains("1 active node(s)") && err.contains(NODE_B),
        "{err}"
    );
    let o = json_ok(&as_node("converge", (&b.path, &with_static), dir, NODE_B));
    assert_eq!(o["unlocked_by"], serde_json::json!([1, "static"]), "{o}");
    assert!(
        o.to_string().contains("rewrap"),
        "the KMS slot rewrapped: {o}"
    );
    ok(&kms_admin(
        dir,
        server.port,
        &["retire", "--version", &old_id],
        "admin",
    ));
    let o = json_ok(&as_node("plan", (&a.path, &cfg), dir, NODE_A));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");
    // B's KMS slot alone opens it after the retirement: its rewrap holds.
    let o = json_ok(&as_node("plan", (&b.path, &cfg), dir, NODE_B));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");
}

/// Two `volctl kms-server` replicas over a real etcd: what one sealed the
/// other unseals, and a revocation through one holds on the other.
#[test]
fn two_replicas_over_etcd_serve_the_same_fleet() {
    let (a, b) = (image(40), image(40));
    let dir = a.dir.path();
    let pki = kms::test_pki::generate();
    let etcd = kms::test_etcd::EtcdCluster::start(1);
    let one = KmsServer::with_store(dir, &pki, 0, &[&etcd.store_arg()]);
    let two = KmsServer::with_store(dir, &pki, 0, &[&etcd.store_arg()]);
    let (cfg_one, cfg_two) = (config(dir, one.port, ""), config(dir, two.port, ""));
    json_ok(&as_node("converge", (&a.path, &cfg_one), dir, NODE_A));
    json_ok(&as_node("converge", (&b.path, &cfg_one), dir, NODE_B));

    let o = json_ok(&as_node("plan", (&a.path, &cfg_two), dir, NODE_A));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");
    assert_eq!(o["kdf_runs"], 1, "{o}");
    let table = ok(&kms_admin(dir, two.port, &["nodes"], "admin"));
    assert_eq!(
        table.lines().filter(|l| l.contains("active")).count(),
        2,
        "{table}"
    );

    ok(&kms_admin(
        dir,
        two.port,
        &["revoke", "--node", NODE_A],
        "admin",
    ));
    let o = as_node("plan", (&a.path, &cfg_one), dir, NODE_A);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    assert!(text(&o.stderr).contains("revoked"), "{}", text(&o.stderr));
    let o = json_ok(&as_node("plan", (&b.path, &cfg_one), dir, NODE_B));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");
    assert!(two.log().contains("node revoked"), "an audit line");
}

/// `--enrol registered`: a node nobody registered enrols nothing (the
/// converge fails naming the verb, the image untouched); after `volctl kms
/// register` it enrols and unlocks.
#[test]
fn with_registered_enrolment_a_node_enrols_once_an_admin_registered_it() {
    let a = image(40);
    let dir = a.dir.path();
    let pki = kms::test_pki::generate();
    let store = format!("file:{}", dir.join("nodes.redb").display());
    let server = KmsServer::with_store(dir, &pki, 0, &[&store, "--enrol", "registered"]);
    let cfg = config(dir, server.port, "");
    let before = sha256_file(&a.path);
    let o = as_node("converge", (&a.path, &cfg), dir, NODE_A);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    assert!(
        err.contains("not registered") && err.contains("volctl kms register"),
        "{err}"
    );
    assert_eq!(sha256_file(&a.path), before, "nothing written");

    let said = ok(&kms_admin(
        dir,
        server.port,
        &["register", "--node", NODE_A],
        "admin",
    ));
    assert!(said.contains("registered 1 node(s)"), "{said}");
    let o = json_ok(&as_node("converge", (&a.path, &cfg), dir, NODE_A));
    assert_eq!(o["kdf_runs"], 1, "{o}");
    let o = json_ok(&as_node("plan", (&a.path, &cfg), dir, NODE_A));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");
    assert!(server.log().contains("node registered"), "an audit line");
}

/// `kms: {attest: true}` with swtpm and the server as a real process: the
/// node's TPM is recorded at enrolment (`nodes` says so); after PCR 7
/// changes the KMS releases nothing (the converge names the attestation,
/// nothing written); `volctl kms allow` with the new value opens it again.
#[test]
fn an_attested_key_opens_only_in_the_state_the_kms_allows() {
    let tpm = providers::test_swtpm::Swtpm::start();
    let a = image(40);
    let dir = a.dir.path();
    let pki = kms::test_pki::generate();
    let server = start(dir, &pki, 0);
    let p = dir.join("attest.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\nprovisioning: {{diskSelector: {{match: '!system_disk'}}, maxSize: 1GiB}}\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      kms: {{endpoint: 'https://localhost:{}', timeout: 5s, attest: true}}\n", server.port),
    )
    .unwrap();
    let tcti = tpm.tcti();
    let run = |verb: &str| as_node_with(verb, (&a.path, &p), dir, NODE_A, &["--tpm-tcti", &tcti]);
    json_ok(&run("converge"));
    let table = ok(&kms_admin(dir, server.port, &["nodes"], "admin"));
    eprintln!("{table}");
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(NODE_A) && l.contains("yes (")),
        "{table}"
    );
    let o = json_ok(&run("plan"));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");

    tpm.extend_pcr(7);
    let before = sha256_file(&a.path);
    let o = run("converge");
    assert_eq!(o.status.code(), Some(1), "{}", text(&o.stdout));
    let err = text(&o.stderr);
    eprintln!("{err}");
    assert!(
        err.contains("attestation refused") && err.contains("volctl kms allow"),
        "{err}"
    );
    assert_eq!(sha256_file(&a.path), before, "nothing written");

    use sha2::Digest;
    let mut pcr7 = sha2::Sha256::new();
    pcr7.update([0u8; 32]);
    pcr7.update(providers::test_swtpm::MEASUREMENT);
    let value = format!("7={}", hex::encode(pcr7.finalize()));
    let said = ok(&kms_admin(
        dir,
        server.port,
        &["allow", "--node", NODE_A, "--pcr", &value],
        "admin",
    ));
    assert!(said.contains("allowed for"), "{said}");
    let o = json_ok(&run("plan"));
    assert_eq!(o["unlocked_by"], serde_json::json!([0, "kms"]), "{o}");
    assert!(server.log().contains("PCR values allowed"), "an audit line");
}
