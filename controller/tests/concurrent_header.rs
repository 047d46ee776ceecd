//! volctl reads a header while another process rewrites it (an online
//! reencryption updates its header after every step; `volctl status`,
//! `apply-config` and `plan` read it meanwhile). Each read works on one
//! copy of the metadata area taken at one moment, so volctl's reader and
//! libcryptsetup's load never see two different headers and never refuse
//! a header for it.

mod common;

use api_types::KeyslotId;
use common::*;
use controller::converge::{open_device, Mode};
use controller::device::Contents;
use std::collections::BTreeSet;
use std::process::{Child, Command};

const S0: &str = "{slot: 0, static: {passphrase: first-secret}}";

/// A `cryptsetup` process that adds and removes a token of its own, over
/// and over: every round writes both header copies twice, seqid rising.
fn rewriter(img: &Image) -> Child {
    let token = img.dir.path().join("token.json");
    std::fs::write(&token, r#"{"type":"another-tool","keyslots":[]}"#).unwrap();
    let (t, p) = (token.display(), img.path.display());
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "while :; do cryptsetup token import --token-id 7 --json-file {t} {p} && cryptsetup token remove --token-id 7 {p} || exit 1; done"
        ))
        .spawn()
        .unwrap()
}

#[test]
fn a_header_rewritten_by_another_process_while_volctl_reads_it_is_read_whole() {
    let img = image(40);
    let spec = config(&[S0]);
    apply(&spec, &img.path);
    let slot0 = KeyslotId::new(0).unwrap();
    let key_size = spec.encryption.key_size();

    let mut writer = rewriter(&img);
    let (mut seen, mut failures) = (BTreeSet::new(), Vec::new());
    for round in 0..300 {
        let dev = open_device(&spec, &img.path, Mode::DryRun).unwrap();
        match dev.contents() {
            Ok(Contents::Luks2(h)) => {
                seen.insert(h.seqid);
            }
            other => failures.push(format!("read {round}: {other:?}")),
        }
        if round % 30 == 0 {
            if let Err(e) = dev.volume_key(slot0, key_size, b"first-secret") {
                failures.push(format!("unlock {round}: {e}"));
            }
        }
    }
    let still_writing = writer.try_wait().unwrap().is_none();
    writer.kill().unwrap();
    writer.wait().unwrap();

    assert!(still_writing, "the rewriting cryptsetup failed");
    assert!(failures.is_empty(), "{failures:#?}");
    // The reads did overlap the rewrites: they saw many header versions.
    assert!(seen.len() >= 20, "only seqids {seen:?} were read");
}
