//! The keyslot engine on real LUKS2 headers (libcryptsetup), each result
//! checked with the `cryptsetup` CLI.

mod common;

use api_types::KeyslotId;
use common::*;
use controller::converge::plan::{Action, Note};
use controller::converge::{ConvergeError, Mode};
use providers::ProviderEnv;

const K0: KeyslotId = KeyslotId::nth(0);
const K1: KeyslotId = KeyslotId::nth(1);
const K2: KeyslotId = KeyslotId::nth(2);
const K5: KeyslotId = KeyslotId::nth(5);

const S0: &str = "{slot: 0, static: {passphrase: first-pass}}";
const N2: &str = "{slot: 2, nodeID: {}}";
const S1: &str = "{slot: 1, static: {passphrase: second-pass}}";

#[test]
fn blank_image_gets_exactly_the_configured_slots_and_tokens() {
    let img = image(40);
    let o = apply(&config(&[S0, N2]), &img.path);
    assert!(o.formatted);
    assert_eq!(o.kdf_runs, 2, "one KDF per enrolled key");
    assert_eq!(slots(&img.path), vec![0, 2]);
    let d = dump(&img.path);
    let mut tokens: Vec<(String, Vec<String>)> = d["tokens"]
        .as_object()
        .unwrap()
        .values()
        .map(|t| {
            (
                t["type"].as_str().unwrap().to_string(),
                t["keyslots"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|s| s.as_str().unwrap().to_string())
                    .collect(),
            )
        })
        .collect();
    tokens.sort();
    assert_eq!(
        tokens,
        vec![
            ("volctl".into(), vec!["0".into()]),
            ("volctl".into(), vec!["2".into()])
        ]
    );
    assert!(opens(&img.path, 0, b"first-pass"));
    assert!(opens(&img.path, 2, &node_pass()));
    assert!(!opens(&img.path, 2, b"first-pass"));
    assert_eq!(d["segments"]["0"]["encryption"], "aes-xts-plain64");
    // No token carries the passphrase.
    assert!(!d.to_string().contains("first-pass"));
}

#[test]
fn rotation_across_two_converges_keeps_volume_key_and_segment() {
    let img = image(40);
    apply(&config(&[S0, N2]), &img.path);
    let seg = dump(&img.path)["segments"].clone();
    let digest = dump(&img.path)["digests"].clone();
    let vk = volume_key(&img.path, 0, b"first-pass");

    let o = apply(&config(&[S0, S1, N2]), &img.path);
    assert_eq!(
        o.plan.actions,
        vec![Action::Add {
            slot: K1,
            kind: api_types::KeySource::Static,
            lock_to_state: false,
            binds: None,
        }]
    );
    assert_eq!(o.kdf_runs, 2, "unlock + one enrolment");
    assert_eq!(slots(&img.path), vec![0, 1, 2]);
    assert!(opens(&img.path, 1, b"second-pass"));

    let o = apply(&config(&[S1, N2]), &img.path);
    assert!(
        matches!(o.plan.actions.as_slice(), [Action::Remove { slot: K0, .. }]),
        "{:?}",
        o.plan
    );
    assert_eq!(slots(&img.path), vec![1, 2]);
    assert!(!opens(&img.path, 0, b"first-pass"));
    assert_eq!(dump(&img.path)["segments"], seg);
    assert_eq!(
        dump(&img.path)["digests"]["0"]["digest"],
        digest["0"]["digest"]
    );
    assert_eq!(volume_key(&img.path, 1, b"second-pass"), vk);
    // No orphan token left behind by the removed slot.
    assert_eq!(dump(&img.path)["tokens"].as_object().unwrap().len(), 2);
}

#[test]
fn changed_passphrase_is_detected_by_binding_and_replaced() {
    let img = image(40);
    apply(&config(&[S0, N2]), &img.path);
    let changed = "{slot: 0, static: {passphrase: changed-pass}}";
    let o = apply(&config(&[changed, N2]), &img.path);
    assert_eq!(
        o.unlocked_by,
        Some((K2, api_types::KeySource::NodeId)),
        "the old static key cannot unlock"
    );
    assert!(
        matches!(
            o.plan.actions.as_slice(),
            [Action::Replace { slot: K0, .. }]
        ),
        "{:?}",
        o.plan
    );
    assert!(opens(&img.path, 0, b"changed-pass"));
    assert!(!opens(&img.path, 0, b"first-pass"));
}

#[test]
fn unchanged_config_plans_nothing_and_does_not_move_the_epoch() {
    let img = image(40);
    apply(&config(&[S0, N2]), &img.path);
    let epoch = dump(&img.path)["config"].clone();
    let before = sha256_file(&img.path);
    let o = apply(&config(&[S0, N2]), &img.path);
    assert!(o.plan.is_empty() && !o.applied, "{:?}", o.plan);
    assert_eq!(o.seqid.0, o.seqid.1);
    assert_eq!(
        sha256_file(&img.path),
        before,
        "a converged volume is not written"
    );
    assert_eq!(dump(&img.path)["config"], epoch);
}

#[test]
fn converged_volume_costs_exactly_one_kdf_run_whatever_the_key_count() {
    let img = image(40);
    let keys = [
        S0,
        S1,
        N2,
        "{slot: 3, static: {passphrase: p3}}",
        "{slot: 4, nodeID: {}, lockToSTATE: true}",
    ];
    apply(&config(&keys), &img.path);
    let o = apply(&config(&keys), &img.path);
    assert_eq!(o.kdf_runs, 1, "{o:?}");
    let o = run(&config(&keys), &img.path, &env(), Mode::DryRun).unwrap();
    assert_eq!(o.kdf_runs, 1);
}

#[test]
fn non_blank_device_is_refused_and_left_byte_identical() {
    let img = image(40);
    let st = std::process::Command::new("mkfs.ext4")
        .args(["-q", "-F"])
        .arg(&img.path)
        .status()
        .unwrap();
    assert!(st.success());
    let before = sha256_file(&img.path);
    let e = run(&config(&[S0]), &img.path, &env(), Mode::Apply).unwrap_err();
    assert!(matches!(e, ConvergeError::NotBlank { .. }), "{e}");
    assert!(e.to_string().contains("ext2/3/4 filesystem"), "{e}");
    assert_eq!(sha256_file(&img.path), before);
}

#[test]
fn wrong_key_is_a_clear_error_listing_the_slots_and_nothing_is_written() {
    let img = image(40);
    apply(&config(&[S0, N2]), &img.path);
    let before = sha256_file(&img.path);
    let e = run(
        &config(&["{slot: 0, static: {passphrase: wrong}}"]),
        &img.path,
        &env(),
        Mode::Apply,
    )
    .unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, ConvergeError::NoKeyOpens { .. }), "{msg}");
    assert!(
        msg.contains("0 (static)") && msg.contains("2 (nodeID)") && msg.contains("wrong key"),
        "{msg}"
    );
    assert!(!msg.contains("wrong\""), "no passphrase in errors: {msg}");
    assert_eq!(sha256_file(&img.path), before);
}

#[test]
fn missing_salt_and_low_entropy_uuid_are_clear_errors_and_nothing_is_written() {
    let img = image(40);
    let salted = "{slot: 0, nodeID: {}, lockToSTATE: true}";
    let no_salt = ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Nobody,
        asker: None,
        node_uuid: Ok(UUID.into()),
        state_salt: None,
        kms: Default::default(),
        tpm: Default::default(),
        key_servers_until: None,
    };
    let e = run(&config(&[salted]), &img.path, &no_salt, Mode::Apply).unwrap_err();
    assert!(e.to_string().contains("STATE salt is not available"), "{e}");
    assert!(!is_luks(&img.path));

    let bad_uuid = providers::node_uuid(
        Some("00000000-0000-0000-0000-000000000000"),
        std::path::Path::new("/x"),
    );
    let env = ProviderEnv {
        recovery_handover: providers::RecoveryHandover::Nobody,
        asker: None,
        node_uuid: bad_uuid,
        state_salt: None,
        kms: Default::default(),
        tpm: Default::default(),
        key_servers_until: None,
    };
    let e = run(
        &config(&["{slot: 0, nodeID: {}}"]),
        &img.path,
        &env,
        Mode::Apply,
    )
    .unwrap_err();
    assert!(e.to_string().contains("too little entropy"), "{e}");
    assert!(!is_luks(&img.path));

    // With the salt, the same config works; without it, the enrolled slot is
    // reported, not touched, while another key opens the volume.
    apply(&config(&[salted, S1]), &img.path);
    let before = sha256_file(&img.path);
    let o = run(&config(&[salted, S1]), &img.path, &no_salt, Mode::Apply).unwrap();
    assert!(o.plan.actions.is_empty());
    assert!(
        matches!(
            o.plan.notes.as_slice(),
            [Note::Unverified { slot: K0, .. }] | [Note::Unavailable { slot: K0, .. }]
        ),
        "{:?}",
        o.plan.notes
    );
    assert_eq!(sha256_file(&img.path), before);
}

#[test]
fn slot_added_outside_volctl_survives_and_is_reported_unmanaged() {
    let img = image(40);
    apply(&config(&[S0]), &img.path);
    let new_key = img.dir.path().join("operator.key");
    std::fs::write(&new_key, b"operator-pass").unwrap();
    cryptsetup_then(
        &[
            "luksAddKey",
            "--batch-mode",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--key-slot",
            "5",
            "--key-file",
            "-",
        ],
        &img.path,
        &[&new_key],
        b"first-pass",
    );
    assert_eq!(slots(&img.path), vec![0, 5]);
    let o = apply(&config(&[S0]), &img.path);
    assert!(o.plan.actions.is_empty(), "{:?}", o.plan);
    assert_eq!(o.plan.notes, vec![Note::Unmanaged { slot: K5 }]);
    assert_eq!(slots(&img.path), vec![0, 5]);
    assert!(opens(&img.path, 5, b"operator-pass"));
}

#[test]
fn tampered_or_mismatched_header_is_refused_before_any_kdf() {
    for (cipher, why) in [
        ("cipher_null-ecb", "stores data unencrypted"),
        ("aes-cbc-essiv:sha256", "config asks for `aes-xts-plain64`"),
    ] {
        let img = image(40);
        apply(&config(&[S0]), &img.path);
        tamper_json(&img.path, |v| {
            v["segments"]["0"]["encryption"] = cipher.into()
        });
        // The CLI accepts the tampered header as valid LUKS2.
        assert_eq!(dump(&img.path)["segments"]["0"]["encryption"], cipher);
        let before = sha256_file(&img.path);
        let dev =
            controller::converge::open_device(&config(&[S0]), &img.path, Mode::Apply).unwrap();
        let rt = tokio::runtime::Runtime::new().unwrap();
        let e = rt
            .block_on(controller::converge::converge(
                &config(&[S0]),
                dev.clone(),
                &env(),
                Mode::Apply,
            ))
            .unwrap_err();
        assert_eq!(dev.kdf_runs(), 0, "no passphrase touched the header");
        let msg = e.to_string();
        assert!(matches!(e, ConvergeError::UntrustedHeader { .. }), "{msg}");
        assert!(msg.contains(cipher) && msg.contains(why), "{msg}");
        assert_eq!(sha256_file(&img.path), before);
    }
}

#[test]
fn extra_segment_or_unbound_keyslot_is_refused() {
    let img = image(40);
    apply(&config(&[S0]), &img.path);
    tamper_json(&img.path, |v| {
        let seg = v["segments"]["0"].clone();
        v["segments"]["1"] = seg;
    });
    let e = run(&config(&[S0]), &img.path, &env(), Mode::DryRun).unwrap_err();
    assert!(e.to_string().contains("2 segments"), "{e}");
}

#[test]
fn a_pbkdf2_config_enrols_pbkdf2_keyslots() {
    // Used to fail with EINVAL: memory and threads were set for PBKDF2.
    let y = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  pbkdf: {type: pbkdf2, iterations: 1000}\n  keys:\n    - {slot: 0, static: {passphrase: first-pass}}\n";
    let p = api_types::parse_str("pbkdf2.yaml", y);
    assert!(!p.has_errors(), "{:?}", p.diagnostics);
    let spec = controller::volume::VolumeSpec::from_documents(&p.documents, "EPHEMERAL").unwrap();
    let img = image(40);
    apply(&spec, &img.path);
    let kdf = &dump(&img.path)["keyslots"]["0"]["kdf"];
    assert_eq!(kdf["type"], "pbkdf2", "{kdf}");
    assert_eq!(kdf["iterations"], 1000, "{kdf}");
    assert!(opens(&img.path, 0, b"first-pass"));
}
