//! Every error of a config is reported, none hides another, and no secret
//! is echoed (issue 16, items 10–13).

use api_types::{parse_files, parse_str};

const BAD: &str = r#"apiVersion: v1alpha1
kind: VolumeConfig
name: EPHEMERAL
bogus: 1
encryption:
  provider: luks2
  keySize: "big"
  keys:
    - {slot: 0, static: "MySecretPassphrase"}
    - {slot: 0, nodeID: {}}
    - {slot: 1, static: {passphrase: 12345678}}
---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: data
encryption:
  provider: luks2
  keys:
    - {slot: 99999999999999999999999, nodeID: {}}
---
apiVersion: v1alpha1
kind: UserVolumeConfig
name: logs
encryption:
  provider: luks2
  keys: []
"#;

/// Asserts that `all` holds each of `expected`, naming the first missing.
fn contains_each(all: &str, expected: &[&str]) {
    for expect in expected {
        assert!(all.contains(expect), "missing {expect:?} in\n{all}");
    }
}

fn messages(file: &api_types::ParsedFile) -> Vec<String> {
    file.diagnostics.iter().map(|d| d.to_string()).collect()
}

#[test]
fn an_unknown_field_hides_neither_type_nor_semantic_errors() {
    let p = parse_str("bad.yaml", BAD);
    let all = messages(&p).join("\n");
    contains_each(
        &all,
        &[
            "bad.yaml:4: error: document 1 (VolumeConfig \"EPHEMERAL\"): bogus: unknown field",
            "bad.yaml:7: error: document 1 (VolumeConfig \"EPHEMERAL\"): encryption.keySize:",
            "encryption.keys[0].static: invalid type",
            "encryption.keys[1].slot: duplicate key slot 0",
            "encryption.keys[2].static.passphrase: invalid type",
        ],
    );
}

#[test]
fn no_secret_reaches_a_diagnostic() {
    let p = parse_str("bad.yaml", BAD);
    let all = messages(&p).join("\n") + &serde_json::to_string(&p.diagnostics).unwrap();
    assert!(!all.contains("MySecretPassphrase"), "{all}");
    assert!(!all.contains("12345678"), "{all}");
}

#[test]
fn an_out_of_range_number_is_reported_where_it_is_and_later_documents_are_checked() {
    let p = parse_str("bad.yaml", BAD);
    let all = messages(&p).join("\n");
    assert!(
        all.contains("bad.yaml:19: error: document 2: encryption.keys[0].slot: invalid type: integer `99999999999999999999999`"),
        "{all}"
    );
    assert!(!all.contains("syntax error"), "{all}");
    assert!(
        all.contains("document 3 (UserVolumeConfig \"logs\")"),
        "{all}"
    );
}

#[test]
fn the_same_volume_in_two_files_is_one_error_at_its_real_place() {
    let dir = tempfile::tempdir().unwrap();
    let doc = format!("apiVersion: v1alpha1\nkind: UserVolumeConfig\nname: data\n{PROVISIONING}");
    let (fa, fb) = (dir.path().join("fa.yaml"), dir.path().join("fb.yaml"));
    std::fs::write(&fa, &doc).unwrap();
    std::fs::write(&fb, format!("# leading comment\n\n{doc}")).unwrap();
    let (p, joined) = parse_files(&[fa.clone(), fb.clone()]);
    assert_eq!(p.documents.len(), 1);
    let all = messages(&p).join("\n");
    let want = format!(
        "{}:5: error: document 1 (UserVolumeConfig \"data\"): name: UserVolumeConfig \"data\" is already defined by document 1 of {}",
        fb.display(),
        fa.display()
    );
    assert!(all.contains(&want), "{all}");
    assert!(joined.contains("---") && joined.matches("name: data").count() == 2);
}

/// What every user volume needs (Talos): a disk selector and a size.
const PROVISIONING: &str = "provisioning: {diskSelector: {match: '!system_disk'}, maxSize: 1GiB}\n";
const HEAD: &str = "apiVersion: v1alpha1\nkind: UserVolumeConfig\nprovisioning: {diskSelector: {match: '!system_disk'}, maxSize: 1GiB}\n";

#[test]
fn dangerous_values_are_refused_or_warned_about() {
    let long = "x".repeat(513);
    let text = format!(
        "{HEAD}name: a\nmount: {{path: /proc/x}}\n---\n{HEAD}name: b\nmount: {{path: /data}}\n---\n{HEAD}name: c\nmount: {{path: /data/}}\n---\n\
         {HEAD}name: d\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, kms: {{endpoint: \"https://user:pw@kms:4050\"}}}}\n    - {{slot: 1, static: {{passphrase: {long}}}}}\n\
         ---\n{HEAD}name: e\nencryption:\n  provider: luks2\n  pbkdf: {{type: argon2id, memoryKiB: 64, iterations: 4000000000}}\n  keys:\n    - {{slot: 0, nodeID: {{}}}}\n"
    );
    let p = parse_str("d.yaml", &text);
    let all = messages(&p).join("\n");
    contains_each(
        &all,
        &[
        "d.yaml:5: error: document 1 (UserVolumeConfig \"a\"): mount.path: `/proc/x` would mount over /proc",
        "d.yaml:17: error: document 3 (UserVolumeConfig \"c\"): mount.path: /data is already the mount point of UserVolumeConfig \"b\" (document 2)",
        "encryption.keys[0].kms.endpoint: the endpoint carries credentials",
        "encryption.keys[1].static.passphrase: the passphrase is longer than 512 bytes",
        "warning: document 5 (UserVolumeConfig \"e\"): encryption.pbkdf.iterations: 4000000000 iterations",
        ],
    );
    assert!(
        !all.contains("pw@") && !all.contains(&long),
        "no secret echoed:\n{all}"
    );
}

#[test]
fn a_typo_is_one_error_naming_the_field_meant_and_the_secret_is_not_echoed() {
    let yaml = "apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      static:\n        passprase: hunter2-secret\n";
    let parsed = parse_str("typo.yaml", yaml);
    let errors: Vec<String> = parsed.errors().map(|d| d.to_string()).collect();
    assert_eq!(errors.len(), 1, "{errors:#?}");
    assert_eq!(
        errors[0],
        "typo.yaml:9: error: document 1 (VolumeConfig \"EPHEMERAL\"): encryption.keys[0].static.passprase: unknown field `passprase`, did you mean `passphrase`?"
    );
    assert!(!errors[0].contains("hunter2"));
    // Far from every name: the list of what is allowed, as before.
    let far = parse_str("far.yaml", &yaml.replace("passprase", "secretWord"));
    let msg: Vec<String> = far.errors().map(|d| d.message.clone()).collect();
    assert!(
        msg.iter().any(|m| m.contains("allowed here: passphrase")),
        "{msg:#?}"
    );
}

#[test]
fn kms_replicas_are_checked_each_by_its_place() {
    let text = format!(
        "{HEAD}name: a\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, kms: {{}}}}\n    - {{slot: 1, kms: {{endpoint: \"https://k:4050\", endpoints: [\"https://j:4050\"]}}}}\n    - {{slot: 2, kms: {{endpoints: [\"https://k:4050\", \"kms-b\", \"https://k:4050\"], timeout: \"soon\"}}}}\n    - {{slot: 3, kms: {{endpoints: [\"https://k:4050\"], timeout: \"-1s\"}}}}\n"
    );
    let p = parse_str("r.yaml", &text);
    let all = messages(&p).join("\n");
    contains_each(
        &all,
        &[
            "encryption.keys[0].kms: set `endpoint` (or `endpoints`, replicas of one KMS)",
            "encryption.keys[1].kms: set `endpoint` or `endpoints`, not both",
            "encryption.keys[2].kms.endpoints[1]: `kms-b` is not a URL",
            "encryption.keys[2].kms.endpoints[2]: `https://k:4050` is listed twice",
            "encryption.keys[2].kms.timeout: `soon` is not a duration",
            "encryption.keys[3].kms.timeout: `-1s` is not a positive duration",
        ],
    );
    let good = format!(
        "{HEAD}name: b\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, kms: {{endpoints: [\"https://a:4050\", \"https://b:4050\"], timeout: 2s}}}}\n"
    );
    let p = parse_str("g.yaml", &good);
    assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
    let key = p.documents[0].encryption().unwrap().keys[0]
        .resolve()
        .unwrap();
    assert_eq!(
        key.kind,
        api_types::KeyKind::Kms {
            endpoints: vec!["https://a:4050".into(), "https://b:4050".into()],
            deadline: std::time::Duration::from_secs(2),
            attest: false,
        }
    );
}

#[test]
fn a_threshold_is_checked_member_by_member_and_a_good_one_resolves() {
    let text = format!(
        "{HEAD}name: a\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      threshold:\n        required: 3\n        keys:\n          - {{static: {{passphrase: \"\"}}}}\n          - {{nodeID: {{}}, tpm: {{}}}}\n    - slot: 1\n      threshold: {{required: 0, keys: [{{kms: {{endpoint: kms-a}}}}]}}\n    - slot: 2\n      threshold: {{required: 1, keys: [{{}}]}}\n"
    );
    let p = parse_str("t.yaml", &text);
    let all = messages(&p).join("\n");
    contains_each(
        &all,
        &[
        "encryption.keys[0].threshold.required: required is 3; it must be 1 to the number of member keys (2)",
        "encryption.keys[0].threshold.keys[0].static.passphrase: the passphrase is empty",
        "encryption.keys[0].threshold.keys[1]: a member has exactly one kind of static, nodeID, kms, tang, tpm, prompt",
        "this one has nodeID, tpm",
        "encryption.keys[1].threshold.required: required is 0",
        "encryption.keys[1].threshold.keys[0].kms.endpoint: `kms-a` is not a URL",
        "encryption.keys[2].threshold.keys[0]: a member has exactly one kind",
        "this one has none",
        ],
    );
    // Recovery keys and thresholds are not members: named as unknown fields.
    for member in [
        "recovery: {}",
        "threshold: {required: 1, keys: [{nodeID: {}}]}",
    ] {
        let text = format!(
            "{HEAD}name: b\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      threshold: {{required: 1, keys: [{{{member}}}]}}\n"
        );
        let p = parse_str("m.yaml", &text);
        let all = messages(&p).join("\n");
        let field = member.split(':').next().unwrap();
        assert!(
            all.contains(&format!("unknown field `{field}`")),
            "{member}: {all}"
        );
    }
    let good = format!(
        "{HEAD}name: c\nencryption:\n  provider: luks2\n  keys:\n    - slot: 3\n      threshold:\n        required: 2\n        keys:\n          - tpm: {{}}\n          - kms: {{endpoint: \"https://kms-a:4050\"}}\n          - nodeID: {{}}\n"
    );
    let p = parse_str("g.yaml", &good);
    assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
    let key = p.documents[0].encryption().unwrap().keys[0]
        .resolve()
        .unwrap();
    let api_types::KeyKind::Threshold { required, members } = &key.kind else {
        panic!("{:?}", key.kind)
    };
    assert_eq!(*required, 2);
    let kinds: Vec<&str> = members.iter().map(api_types::KeyKind::name).collect();
    assert_eq!(kinds, ["tpm", "kms", "nodeID"]);
}

#[test]
fn a_static_member_of_a_threshold_on_state_is_warned_about_as_a_static_key_is() {
    let doc = |allow: &str| {
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: STATE\nencryption:\n  provider: luks2\n{allow}  keys:\n    - slot: 0\n      threshold: {{required: 1, keys: [{{nodeID: {{}}}}, {{static: {{passphrase: on-meta}}}}]}}\n")
    };
    let p = parse_str("s.yaml", &doc(""));
    assert!(!p.has_errors(), "{:?}", messages(&p));
    let all = messages(&p).join("\n");
    assert!(
        all.contains("encryption.keys[0].threshold.keys[1].static: a static member on STATE is stored in clear on the META partition"),
        "{all}"
    );
    let p = parse_str("s.yaml", &doc("  allowStaticKeyOnState: true\n"));
    assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
}

#[test]
fn a_signed_pcr_policy_is_checked_by_its_place_and_a_good_one_resolves() {
    let text = format!(
        "{HEAD}name: a\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, tpm: {{signedPolicy: {{publicKey: key.pem, pcrs: []}}}}}}\n    - {{slot: 1, tpm: {{options: {{pcrs: [7, 11]}}, signedPolicy: {{signature: sig.json, pcrs: [11, 24, 11]}}}}}}\n    - {{slot: 2, tpm: {{signedPolicy: {{pubKey: /k.pem}}}}}}\n"
    );
    let p = parse_str("s.yaml", &text);
    let all = messages(&p).join("\n");
    contains_each(
        &all,
        &[
        "encryption.keys[0].tpm.signedPolicy.publicKey: give an absolute path",
        "encryption.keys[0].tpm.signedPolicy.pcrs: a signed policy covers at least one PCR",
        "encryption.keys[1].tpm.signedPolicy.signature: give an absolute path",
        "encryption.keys[1].tpm.signedPolicy.pcrs[0]: PCR 11 is also among the literal PCRs",
        "encryption.keys[1].tpm.signedPolicy.pcrs[1]: PCR 24 is outside 0–23",
        "encryption.keys[1].tpm.signedPolicy.pcrs[2]: PCR 11 is listed twice",
        "encryption.keys[2].tpm.signedPolicy.pubKey: unknown field `pubKey`; allowed here: pcrs, publicKey, signature",
        ],
    );
    let good = format!(
        "{HEAD}name: b\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, tpm: {{options: {{pcrs: []}}, signedPolicy: {{}}}}}}\n"
    );
    let p = parse_str("g.yaml", &good);
    assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
    let key = p.documents[0].encryption().unwrap().keys[0]
        .resolve()
        .unwrap();
    assert_eq!(
        key.kind,
        api_types::KeyKind::Tpm {
            pcrs: vec![],
            check_secureboot: false,
            auto_reseal: true,
            signed: Some(api_types::SignedPcrPolicy {
                public_key: "/run/systemd/tpm2-pcr-public-key.pem".into(),
                signature: "/run/systemd/tpm2-pcr-signature.json".into(),
                pcrs: vec![11],
            }),
            pin: false,
        }
    );
}

#[test]
fn a_tpm_pin_is_refused_in_a_threshold_and_with_lock_to_state_and_resolves_typed() {
    let text = format!(
        "{HEAD}name: a\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, tpm: {{pin: true}}, lockToState: true}}\n    - {{slot: 1, threshold: {{required: 1, keys: [{{tpm: {{pin: true}}}}]}}}}\n"
    );
    let p = parse_str("p.yaml", &text);
    contains_each(
        &messages(&p).join("\n"),
        &[
            "encryption.keys[0].lockToState: a TPM key with a PIN is asked for at unlock",
            "encryption.keys[1].threshold.keys[0].tpm.pin: a TPM key with a PIN is a typed key of its own",
        ],
    );
    let good = format!(
        "{HEAD}name: b\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, tpm: {{pin: true}}}}\n"
    );
    let p = parse_str("g.yaml", &good);
    assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
    let key = p.documents[0].encryption().unwrap().keys[0]
        .resolve()
        .unwrap();
    assert_eq!(key.kind.source(), api_types::KeySource::TpmPin);
    assert!(key.kind.source().typed());
    assert_eq!(key.kind.source().name(), "tpm+pin");
}

#[test]
fn a_tang_key_is_checked_by_its_place_and_a_good_one_resolves_also_as_a_member() {
    let thp = "x4XgOj3TCJNBcrXjNbI0GCQGIVfZl7_kV98_93vyR48";
    let text = format!(
        "{HEAD}name: a\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, tang: {{url: \"http://tang:7500\"}}}}\n    - {{slot: 1, tang: {{url: \"https://tang\", thumbprint: short}}}}\n    - {{slot: 2, tang: {{url: \"http://tang\", thumbprint: {thp}, trustOnFirstUse: true, timeout: \"0s\"}}}}\n    - {{slot: 3, tang: {{url: \"tang\", trustOnFirstUse: true}}}}\n"
    );
    let p = parse_str("t.yaml", &text);
    let all = messages(&p).join("\n");
    contains_each(
        &all,
        &[
            "t.yaml:8: error: document 1 (UserVolumeConfig \"a\"): encryption.keys[0].tang.thumbprint: pin the server's signing key",
            "encryption.keys[1].tang.url: scheme `https`: volctl speaks plain http to Tang",
            "encryption.keys[1].tang.thumbprint: `short` is not a SHA-256 JWK thumbprint",
            "encryption.keys[2].tang.trustOnFirstUse: a thumbprint is pinned already",
            "encryption.keys[2].tang.timeout: `0s` is not a positive duration",
            "encryption.keys[3].tang.url: `tang` is not a URL",
        ],
    );
    let good = format!(
        "{HEAD}name: b\nencryption:\n  provider: luks2\n  keys:\n    - {{slot: 0, tang: {{url: \"http://tang:7500\", thumbprint: {thp}, timeout: 2s}}}}\n    - slot: 1\n      threshold: {{required: 1, keys: [{{tang: {{url: \"http://t2\", trustOnFirstUse: true}}}}]}}\n"
    );
    let p = parse_str("g.yaml", &good);
    assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
    let keys = &p.documents[0].encryption().unwrap().keys;
    assert_eq!(
        keys[0].resolve().unwrap().kind,
        api_types::KeyKind::Tang {
            url: "http://tang:7500".into(),
            thumbprint: Some(thp.into()),
            deadline: std::time::Duration::from_secs(2),
        }
    );
    let api_types::KeyKind::Threshold { members, .. } = keys[1].resolve().unwrap().kind else {
        panic!("not a threshold")
    };
    assert_eq!(members[0].name(), "tang");
}

#[test]
fn a_threshold_takes_one_prompt_member_and_then_is_typed() {
    let text = format!(
        "{HEAD}name: a\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      lockToState: true\n      threshold:\n        required: 2\n        keys:\n          - prompt: {{}}\n          - prompt: {{tries: 0}}\n          - tpm: {{}}\n"
    );
    let p = parse_str("t.yaml", &text);
    let all = messages(&p).join("\n");
    contains_each(
        &all,
        &[
            "encryption.keys[0].threshold.keys[1].prompt: a threshold has at most one prompt member",
            "encryption.keys[0].threshold.keys[1].prompt.tries: tries is 0",
            "encryption.keys[0].lockToState: a typed key (prompt, recovery, a threshold with a prompt member) takes no lockToState",
        ],
    );
    let good = format!(
        "{HEAD}name: b\nencryption:\n  provider: luks2\n  keys:\n    - slot: 0\n      threshold: {{required: 2, keys: [{{tpm: {{}}}}, {{prompt: {{tries: 5}}}}]}}\n"
    );
    let p = parse_str("g.yaml", &good);
    assert!(p.diagnostics.is_empty(), "{:?}", messages(&p));
    let key = p.documents[0].encryption().unwrap().keys[0]
        .resolve()
        .unwrap();
    assert_eq!(key.kind.source(), api_types::KeySource::ThresholdPrompt);
    assert!(key.kind.source().typed() && !key.kind.source().opens_unattended());
}

#[test]
fn more_tang_slots_than_a_header_holds_are_refused() {
    let thp = "x4XgOj3TCJNBcrXjNbI0GCQGIVfZl7_kV98_93vyR48";
    let keys: String = (0..5)
        .map(|i| {
            format!("    - {{slot: {i}, tang: {{url: \"http://t{i}\", thumbprint: {thp}}}}}\n")
        })
        .collect();
    let text = format!("{HEAD}name: a\nencryption:\n  provider: luks2\n  keys:\n{keys}");
    let all = messages(&parse_str("t.yaml", &text)).join("\n");
    contains_each(
        &all,
        &["encryption.keys[4].tang: a volume holds at most 4 tang slots"],
    );
}
