//! A threshold key whose member changed, re-made under a power cut at
//! every write (docs/architecture.md, "Power cuts"): `volctl converge`
//! from 2 of (static a, nodeID, static b) to 2 of (static a, nodeID,
//! static c), a fallback static key opening the volume, is cut at every
//! write it makes, the cut write landing whole and landing half. After
//! each cut, and again after the next `volctl converge`, checked outside
//! volctl: every keyslot opens with `cryptsetup` by the fallback, the old
//! threshold secret, or the secret the slot's own token gives back (its
//! shares opened by the members a and nodeID, which both configs share);
//! the volume key `cryptsetup` shows and the data area are the ones from
//! before.

mod common;

use common::cuts::{self, base_image, data_area, fill_data, Cut, Operation};
use common::{dump, opens, slots, text, volume_key, PBKDF, UUID};
use providers::{
    KeyContext, KeyData, KeyProvider, NodeIdProvider, StaticProvider, ThresholdProvider,
};
use std::path::{Path, PathBuf};
use std::process::Command;

const FALLBACK: &str = "fallback-pass";

/// EPHEMERAL: slot 0 a threshold of 2 among (static a, nodeID, static
/// `third`), slot 1 the fallback.
fn config(dir: &Path, third: &str) -> PathBuf {
    let p = dir.join(format!("config-{third}.yaml"));
    std::fs::write(
        &p,
        format!("apiVersion: v1alpha1\nkind: VolumeConfig\nname: EPHEMERAL\nencryption:\n  provider: luks2\n  {PBKDF}\n  keys:\n    - slot: 0\n      threshold:\n        required: 2\n        keys:\n          - static: {{passphrase: member-a-pass}}\n          - nodeID: {{}}\n          - static: {{passphrase: {third}}}\n    - slot: 1\n      static: {{passphrase: {FALLBACK}}}\n"),
    )
    .unwrap();
    p
}

fn converge(img: &Path, cfg: &Path) -> Command {
    cuts::converge_ephemeral(img, cfg)
}

/// The secret a threshold token gives back with the members a and nodeID
/// (both configs have them), if it is one.
fn token_secret(token: &serde_json::Value) -> Option<Vec<u8>> {
    if token["kind"] != "threshold" {
        return None;
    }
    let data = KeyData::read(api_types::KeySource::Threshold, &token["data"]);
    let members: Vec<Box<dyn KeyProvider>> = vec![
        Box::new(StaticProvider::new(api_types::SecretString::new(
            "member-a-pass",
        ))),
        Box::new(NodeIdProvider::new(Ok(UUID.into()))),
    ];
    let ctx = KeyContext {
        volume_id: "EPHEMERAL".into(),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let p = rt.block_on(ThresholdProvider::new(2, members).recover(&ctx, &data));
    p.ok().map(|p| p.expose().to_vec())
}

/// Every secret the header's threshold tokens give back.
fn token_secrets(img: &Path) -> Vec<Vec<u8>> {
    let d = dump(img);
    let tokens = d["tokens"].as_object().cloned().unwrap_or_default();
    tokens.values().filter_map(token_secret).collect()
}

/// What the slot being replaced holds after a cut.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Slot0 {
    /// The old secret: the cut came before the removal (none does today:
    /// the first write is the removal's wipe of the old key material).
    Old,
    /// The secret its token gives back: the replacement is done.
    New,
    /// Nothing usable: cut between the removal and the token of the new
    /// key (the fallback, which opened the volume, still does; the next
    /// converge makes the slot again).
    Between,
}

/// The fallback opens the volume, with the volume key and the data area
/// of `before`; every slot but 0 opens by the fallback; what slot 0 holds.
fn after_a_cut(img: &Path, old: &[u8], before: &(String, Vec<u8>)) -> Slot0 {
    assert!(
        opens(img, 1, FALLBACK.as_bytes()),
        "the fallback slot opens"
    );
    assert_eq!(
        volume_key(img, 1, FALLBACK.as_bytes()),
        before.0,
        "the volume key changed"
    );
    assert_eq!(data_area(img), before.1, "the data area changed");
    let others: Vec<u32> = slots(img).into_iter().filter(|s| *s > 1).collect();
    assert!(others.is_empty(), "no slot beyond 0 and 1: {others:?}");
    if opens(img, 0, old) {
        Slot0::Old
    } else if token_secrets(img).iter().any(|s| opens(img, 0, s)) {
        Slot0::New
    } else {
        Slot0::Between
    }
}

#[test]
fn a_threshold_member_change_survives_a_cut_at_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let (old_cfg, new_cfg) = (
        config(dir.path(), "member-b-pass"),
        config(dir.path(), "member-c-pass"),
    );
    let img = base_image(dir.path());
    let out = converge(&img, &old_cfg).output().unwrap();
    assert!(out.status.success(), "{}", text(&out.stderr));
    fill_data(&img);
    let old = token_secrets(&img).pop().expect("the threshold's secret");
    assert!(opens(&img, 0, &old));
    let before = (volume_key(&img, 1, FALLBACK.as_bytes()), data_area(&img));

    let command = |img: &Path| converge(img, &new_cfg);
    let seen = std::sync::Mutex::new(Vec::new());
    let after_cut = |img: &Path, _: &Path, _: Cut| {
        let state = after_a_cut(img, &old, &before);
        seen.lock().unwrap().push(state);
    };
    let next = |img: &Path, _: &Path, _: Cut| {
        let out = converge(img, &new_cfg).output().unwrap();
        assert!(out.status.success(), "converge: {}", text(&out.stderr));
        assert_eq!(
            after_a_cut(img, &old, &before),
            Slot0::New,
            "{}",
            text(&out.stdout)
        );
        assert_eq!(slots(img), [0, 1], "{}", text(&out.stdout));
        let again = converge(img, &new_cfg).output().unwrap();
        let j: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
        assert_eq!(
            j["plan"]["actions"],
            serde_json::json!([]),
            "converged: {j}"
        );
    };
    let op = Operation::every_write("threshold member change", &img, &command, &after_cut, &next);
    let report = cuts::sweep_alone(&op);
    let seen = seen.into_inner().unwrap();
    let count = |s| seen.iter().filter(|x| **x == s).count();
    eprintln!(
        "{report}; after the cut slot 0 held the old secret {} times, the new {}, nothing usable {}",
        count(Slot0::Old),
        count(Slot0::New),
        count(Slot0::Between)
    );
    assert!(report.writes >= 4, "{report:?}");
    assert!(count(Slot0::New) > 0, "{seen:?}");
}
