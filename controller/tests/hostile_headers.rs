//! Crafted LUKS2 headers, one per way volctl's reader and libcryptsetup
//! could disagree about which header copy is in force (issue 16, item 1),
//! and what a hostile header may never make volctl do: run a KDF against
//! it, enrol into it, or write to the device at all. Each crafted header is
//! first shown to be loaded by libcryptsetup with the hostile segment (the
//! attack works on a reader that checks another copy).

mod common;

use common::header_editor as he;
use common::*;
use controller::converge::{converge, open_device, Mode};
use controller::device::TokenChange;
use std::path::Path;

const S0: &str = "{slot: 0, static: {passphrase: first-secret}}";
const S1: &str = "{slot: 1, static: {passphrase: added-by-attack}}";
const NULL: &str = "cipher_null-ecb";

fn provisioned() -> Image {
    let img = image(40);
    apply(&config(&[S0]), &img.path);
    img
}

/// What libcryptsetup loads from this header, read on a copy of the image
/// (libcryptsetup repairs copies when it loads a writable device).
fn libcryptsetup_cipher(path: &Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.img");
    std::fs::copy(path, &copy).unwrap();
    dump(&copy)["segments"]["0"]["encryption"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// Converging a config that adds a key (dry run, then for real) fails
/// with `expect` in the message, runs no KDF and leaves the device
/// byte-identical.
fn assert_refused(img: &Image, expect: &str) {
    let before = sha256_file(&img.path);
    let spec = config(&[S0, S1]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    for mode in [Mode::DryRun, Mode::Apply] {
        let dev = open_device(&spec, &img.path, mode).unwrap();
        let e = rt
            .block_on(converge(&spec, dev.clone(), &env(), mode))
            .unwrap_err();
        assert!(e.to_string().contains(expect), "{mode:?}: {e}");
        assert_eq!(
            dev.kdf_runs(),
            0,
            "{mode:?}: no passphrase touched the header"
        );
        assert_eq!(sha256_file(&img.path), before, "{mode:?}: nothing written");
    }
    assert_eq!(slots_on_copy(&img.path), vec![0], "no key was enrolled");
}

fn slots_on_copy(path: &Path) -> Vec<u32> {
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("copy.img");
    std::fs::copy(path, &copy).unwrap();
    slots(&copy)
}

fn null_segment(v: &mut serde_json::Value) {
    v["segments"]["0"]["encryption"] = NULL.into();
}

#[test]
fn equal_seqids_with_a_hostile_primary_are_refused() {
    let img = provisioned();
    let p = &img.path;
    let (size, seq) = (he::hdr_size(p), he::seqid(p, 0));
    he::rewrite(p, 0, seq, &he::edited(p, 0, null_segment));
    assert_eq!(he::seqid(p, size), seq);
    assert_eq!(
        libcryptsetup_cipher(p),
        NULL,
        "libcryptsetup takes the primary on a tie"
    );
    assert_refused(&img, "different contents");
}

#[test]
fn equal_seqids_with_a_hostile_secondary_are_refused() {
    let img = provisioned();
    let p = &img.path;
    let (size, seq) = (he::hdr_size(p), he::seqid(p, 0));
    he::rewrite(p, size, seq, &he::edited(p, size, null_segment));
    assert_refused(&img, "different contents");
}

#[test]
fn a_copy_libcryptsetup_refuses_cannot_hide_a_hostile_one() {
    // The primary (newer) is fine for serde but not for libcryptsetup's
    // validator (its JSON size disagrees with the binary header), so
    // libcryptsetup falls back to the hostile secondary.
    let img = provisioned();
    let p = &img.path;
    let (size, seq) = (he::hdr_size(p), he::seqid(p, 0));
    he::rewrite(p, size, seq, &he::edited(p, size, null_segment));
    let odd = he::edited(p, 0, |v| v["config"]["json_size"] = "4096".into());
    he::rewrite(p, 0, seq + 1, &odd);
    assert_eq!(libcryptsetup_cipher(p), NULL);
    assert_refused(&img, "libcryptsetup loads another header");
}

#[test]
fn duplicate_json_keys_are_refused() {
    // json-c keeps the last of two equal keys; serde's typed structs reject
    // them, so a reader that skips such a copy checks the other one.
    let img = provisioned();
    let p = &img.path;
    let seq = he::seqid(p, 0);
    let json = he::json_text(p, 0);
    let at = json.find("\"segments\"").unwrap();
    let text = json[..at].to_string()
        + &json[at..].replacen(
            "\"encryption\":\"aes-xts-plain64\"",
            &format!("\"encryption\":\"aes-xts-plain64\",\"encryption\":\"{NULL}\""),
            1,
        );
    assert!(text.contains(NULL));
    he::rewrite(p, 0, seq + 1, &text);
    assert_eq!(libcryptsetup_cipher(p), NULL);
    assert_refused(&img, "duplicate key `encryption`");
}

#[test]
fn without_a_primary_the_first_intact_secondary_is_the_one_checked() {
    // libcryptsetup takes the first intact secondary in offset order, not
    // the one with the highest seqid.
    let img = provisioned();
    let p = &img.path;
    let (size, seq) = (he::hdr_size(p), he::seqid(p, 0));
    let good = he::json_text(p, 0);
    he::rewrite(p, size, seq, &he::edited(p, size, null_segment));
    he::write_copy(p, 2 * size, 2 * size, he::SECONDARY_MAGIC, seq + 5, &good);
    he::wipe_magic(p, 0);
    assert_eq!(libcryptsetup_cipher(p), NULL);
    assert_refused(&img, "stores data unencrypted");
}

#[test]
fn a_hostile_segment_in_both_copies_is_refused_by_the_check() {
    let img = provisioned();
    tamper_json(&img.path, null_segment);
    assert_refused(&img, "stores data unencrypted");
}

#[test]
fn what_volctl_never_writes_is_refused() {
    type Edit = fn(&mut serde_json::Value);
    let cases: [(&str, Edit); 4] = [
        ("inside the LUKS2 metadata", |v| {
            v["segments"]["0"]["offset"] = "0".into()
        }),
        ("IV tweak", |v| v["segments"]["0"]["iv_tweak"] = "8".into()),
        (
            "integrity",
            |v| v["segments"]["0"]["integrity"] = serde_json::json!({"type": "hmac(sha256)", "journal_encryption": "none", "journal_integrity": "none"}),
        ),
        ("allow-discards", |v| {
            v["config"]["flags"] = serde_json::json!(["allow-discards"])
        }),
    ];
    for (expect, edit) in cases {
        let img = provisioned();
        tamper_json(&img.path, edit);
        assert_refused(&img, expect);
    }
}

#[test]
fn plan_leaves_a_header_with_a_damaged_copy_byte_identical() {
    let img = provisioned();
    let p = &img.path;
    he::damage(p, he::hdr_size(p));
    let before = sha256_file(p);
    let o = run(&config(&[S0, S1]), p, &env(), Mode::DryRun).unwrap();
    assert_eq!(o.plan.actions.len(), 1, "{:?}", o.plan);
    assert_eq!(
        sha256_file(p),
        before,
        "a dry run never lets libcryptsetup repair"
    );
    // A real run repairs (libcryptsetup rewrites the damaged copy) and enrols.
    apply(&config(&[S0, S1]), p);
    assert_eq!(slots(p), vec![0, 1]);
}

#[test]
fn every_write_checks_the_header_it_loaded() {
    // A handle opened for a config refuses to change a header that does not
    // match it, whatever the caller checked before.
    let img = provisioned();
    tamper_json(&img.path, null_segment);
    let before = sha256_file(&img.path);
    let dev = open_device(&config(&[S0]), &img.path, Mode::Apply).unwrap();
    let e = dev
        .destroy_keyslot(api_types::KeyslotId::nth(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("stores data unencrypted"), "{e}");
    let json = serde_json::json!({"type": "x-test", "keyslots": []});
    let e = dev.token(TokenChange::Add(&json)).unwrap_err().to_string();
    assert!(e.contains("stores data unencrypted"), "{e}");
    assert_eq!(sha256_file(&img.path), before);
}

#[test]
fn a_read_only_handle_refuses_every_write() {
    let img = provisioned();
    let before = sha256_file(&img.path);
    let dev = open_device(&config(&[S0]), &img.path, Mode::DryRun).unwrap();
    let e = dev
        .destroy_keyslot(api_types::KeyslotId::nth(0))
        .unwrap_err()
        .to_string();
    assert!(e.contains("read-only"), "{e}");
    assert_eq!(sha256_file(&img.path), before);
}

/// One mutation of one header copy.
#[derive(Debug, Clone)]
struct CopyEdit {
    seqid_delta: i8,
    cipher: Option<&'static str>,
    duplicate_cipher: Option<&'static str>,
    odd_json_size: bool,
    wipe_magic: bool,
}

fn copy_edit() -> impl proptest::strategy::Strategy<Value = CopyEdit> {
    use proptest::prelude::*;
    let cipher = prop_oneof![
        Just(None),
        Just(Some(NULL)),
        Just(Some("aes-cbc-essiv:sha256"))
    ];
    let dup = prop_oneof![Just(None), Just(Some(NULL)), Just(Some("aes-xts-plain64"))];
    (
        -1i8..=1,
        cipher,
        dup,
        any::<bool>(),
        proptest::bool::weighted(0.15),
    )
        .prop_map(
            |(seqid_delta, cipher, duplicate_cipher, odd_json_size, wipe_magic)| CopyEdit {
                seqid_delta,
                cipher,
                duplicate_cipher,
                odd_json_size,
                wipe_magic,
            },
        )
}

fn apply_edit(p: &Path, off: u64, e: &CopyEdit) {
    let seq = he::seqid(p, off).saturating_add_signed(e.seqid_delta.into());
    let json = he::edited(p, off, |v| {
        if let Some(c) = e.cipher {
            v["segments"]["0"]["encryption"] = c.into();
        }
        if e.odd_json_size {
            v["config"]["json_size"] = "4096".into();
        }
    });
    let json = match e.duplicate_cipher {
        None => json,
        Some(c) => {
            let at = json.find("\"segments\"").unwrap();
            let seg = &json[at..];
            let key = seg.find("\"encryption\":").unwrap();
            let end = seg[key + 13..].find(',').unwrap() + key + 13;
            format!(
                "{}{},\"encryption\":\"{c}\"{}",
                &json[..at],
                &seg[..end],
                &seg[end..]
            )
        }
    };
    he::rewrite(p, off, seq, &json);
    if e.wipe_magic {
        he::wipe_magic(p, off);
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]

    /// Whatever is done to either copy (checksums fixed), volctl either
    /// refuses without writing, or enrols into a header that libcryptsetup
    /// loads with the configured cipher: never into one libcryptsetup would
    /// activate differently from what volctl checked.
    #[test]
    fn volctl_never_enrols_into_a_header_libcryptsetup_reads_otherwise(
        primary in copy_edit(),
        secondary in copy_edit(),
    ) {
        let img = provisioned();
        let p = &img.path;
        let size = he::hdr_size(p);
        apply_edit(p, size, &secondary);
        apply_edit(p, 0, &primary);
        let before = sha256_file(p);
        match run(&config(&[S0, S1]), p, &env(), Mode::Apply) {
            Ok(o) => {
                let dir = tempfile::tempdir().unwrap();
                let copy = dir.path().join("copy.img");
                std::fs::copy(p, &copy).unwrap();
                let loaded = dump(&copy);
                proptest::prop_assert_eq!(&loaded["segments"]["0"]["encryption"], "aes-xts-plain64", "{:?}", o.plan);
                proptest::prop_assert_eq!(loaded["segments"].as_object().unwrap().len(), 1);
                proptest::prop_assert!(opens(&copy, 1, b"added-by-attack"));
            }
            Err(e) => proptest::prop_assert_eq!(sha256_file(p), before, "refused ({}) but written", e),
        }
    }
}
