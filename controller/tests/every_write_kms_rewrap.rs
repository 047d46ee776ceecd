//! A KMS key rewrapped after `volctl kms rotate`, under a power cut at
//! every write (docs/architecture.md, "Power cuts"): `volctl converge` of a
//! volume whose slot 0 is a `kms` key (a server with node records, real
//! process, TLS and client certificates) and slot 1 a fallback, cut at
//! every write, whole and torn. After each cut, and again after the next
//! converge, checked outside volctl: the fallback opens with `cryptsetup`
//! with the volume key and data area of before, and the blob in slot 0's
//! token, unsealed by the KMS, is a passphrase that opens slot 0.

mod common;

use common::cuts::{self, base_image, data_area, fill_data, Cut, Operation};
use common::{first_token, opens, text, volume_key, KmsServer, PBKDF, UUID};
use std::path::{Path, PathBuf};
use std::process::Command;

const FALLBACK: &str = "fallback-pass";

fn config(dir: &Path, port: u16) -> PathBuf {
    let p = dir.join("kms.yaml");
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      kms: {{endpoint: 'https://localhost:{port}', timeout: 5s}}\n    - slot: 1\n      static: {{passphrase: {FALLBACK}}}\n"),
    )
    .unwrap();
    p
}

fn start(dir: &Path, pki: &kms::test_pki::TestPki, port: u16) -> KmsServer {
    KmsServer::with_records(dir, pki, port)
}

fn converge(img: &Path, cfg: &Path, dir: &Path) -> Command {
    let mut c = cuts::converge_ephemeral(img, cfg);
    c.env("VOLCTL_KMS_CA_FILE", dir.join("ca.pem"))
        .env("VOLCTL_KMS_CLIENT_CERT", dir.join("node.pem"))
        .env("VOLCTL_KMS_CLIENT_KEY", dir.join("node.key"));
    c
}

/// The passphrase of slot 0, from its token's blob unsealed by the KMS,
/// and the master-key version the server says the blob uses.
fn kms_passphrase(
    img: &Path,
    port: u16,
    pki: &kms::test_pki::TestPki,
) -> Option<(Vec<u8>, String)> {
    use base64::Engine;
    let d = common::dump(img);
    let token = d["tokens"]
        .as_object()?
        .values()
        .find(|t| t["kind"] == "kms")?
        .clone();
    let blob = base64::engine::general_purpose::STANDARD
        .decode(token["data"]["sealedData"].as_str()?)
        .ok()?;
    let client = kms::client::KmsClient::new(
        &format!("https://localhost:{port}"),
        kms::client::ClientOptions {
            ca_pem: Some(pki.ca_pem.clone()),
            identity_pem: Some((pki.client_cert_pem.clone(), pki.client_key_pem.clone())),
            ..Default::default()
        },
    );
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let reply = rt.block_on(client.unseal_reply(UUID, &blob)).ok()?;
    let pass = base64::engine::general_purpose::STANDARD.encode(reply.data.as_slice());
    Some((pass.into_bytes(), reply.key_version))
}

#[test]
fn a_kms_rewrap_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path();
    let pki = kms::test_pki::generate();
    let server = start(work, &pki, 0);
    let port = server.port;
    let cfg = config(work, port);
    let img = base_image(work);
    let out = converge(&img, &cfg, work).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    fill_data(&img);
    let before = (volume_key(&img, 1, FALLBACK.as_bytes()), data_area(&img));

    // A new master key, the server restarted on its port, rotated.
    let keys = std::fs::read_to_string(work.join("keys")).unwrap();
    assert!(server.stop().success());
    let line = common::volctl(&["kms-server", "genkey"]).stdout;
    std::fs::write(work.join("keys"), format!("{keys}{}", text(&line))).unwrap();
    let server = start(work, &pki, port);
    let arg = |f: &str| work.join(f).display().to_string();
    let server_url = format!("https://localhost:{port}");
    let o = common::volctl(&[
        "kms",
        "rotate",
        "--server",
        &server_url,
        "--ca",
        &arg("ca.pem"),
        "--cert",
        &arg("admin.pem"),
        "--key",
        &arg("admin.key"),
    ]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let new_version = text(&line).split(':').next().unwrap().to_string();

    let after_a_cut = |img: &Path| {
        assert!(opens(img, 1, FALLBACK.as_bytes()), "the fallback opens");
        assert_eq!(
            volume_key(img, 1, FALLBACK.as_bytes()),
            before.0,
            "the volume key changed"
        );
        assert_eq!(data_area(img), before.1, "the data area changed");
        let (pass, version) = kms_passphrase(img, port, &pki).expect("slot 0's token unseals");
        assert!(
            opens(img, 0, &pass),
            "slot 0 opens by what its token's blob holds"
        );
        version
    };
    let seen = std::sync::Mutex::new(Vec::new());
    let command = |img: &Path| converge(img, &cfg, work);
    let after_cut =
        |img: &Path, _: &Path, _: Cut| seen.lock().unwrap().push(after_a_cut(img) == new_version);
    let next = |img: &Path, _: &Path, _: Cut| {
        let out = converge(img, &cfg, work).output().unwrap();
        assert!(out.status.success(), "converge: {}", text(&out.stderr));
        assert_eq!(
            after_a_cut(img),
            new_version,
            "rewrapped: {}",
            text(&out.stdout)
        );
        let again = converge(img, &cfg, work).output().unwrap();
        let j: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(
            j["plan"]["actions"],
            serde_json::json!([]),
            "converged: {j}"
        );
        assert!(first_token(img).is_object());
    };
    let op = Operation::every_write("kms rewrap", &img, &command, &after_cut, &next);
    let report = cuts::sweep_alone(&op);
    let seen = seen.into_inner().unwrap();
    let rewrapped = seen.iter().filter(|n| **n).count();
    eprintln!("{report}; after the cut the token held the new version's blob {rewrapped} times, the old one {}", seen.len() - rewrapped);
    assert!(report.writes >= 2, "{report:?}");
    drop(server);
}
